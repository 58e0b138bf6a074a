"""Pure functions, one equation each: the NumPy reference of every layer.

The stateful layer objects that a network is made of live in ``hebbref.modules``;
they call these functions (or a compiled backend with the same signatures).
"""
from .conv import (
    conv_backward,
    conv_forward,
    conv_input_error,
    conv_ramp_maxpool_forward,
    conv_weight_increment,
    maxpool_ramp_conv_backward,
    same_padding,
)
from .dense import dense_forward, dense_input_error, dense_weight_increment
from .dropout import dropout_backward, dropout_draw, dropout_forward, dropout_mask
from .locally_connected import (
    locally_connected_forward,
    locally_connected_input_error,
    locally_connected_ramp_maxpool_forward,
    locally_connected_weight_increment,
    maxpool_ramp_locally_connected_backward,
)
from .pooling import (
    maxpool_backward,
    maxpool_forward,
    maxpool_ramp_backward,
    maxpool_ramp_backward_of_sum,
    ramp_maxpool_forward,
    ramp_plus_maxpool_forward,
)

__all__ = [
    "conv_backward", "conv_forward", "conv_input_error", "conv_weight_increment", "same_padding",
    "conv_ramp_maxpool_forward", "maxpool_ramp_conv_backward",
    "dense_forward", "dense_input_error", "dense_weight_increment",
    "dropout_backward", "dropout_draw", "dropout_forward", "dropout_mask",
    "locally_connected_forward", "locally_connected_input_error",
    "locally_connected_weight_increment", "locally_connected_ramp_maxpool_forward",
    "maxpool_ramp_locally_connected_backward",
    "maxpool_backward", "maxpool_forward", "maxpool_ramp_backward", "maxpool_ramp_backward_of_sum",
    "ramp_maxpool_forward",
    "ramp_plus_maxpool_forward",
]
