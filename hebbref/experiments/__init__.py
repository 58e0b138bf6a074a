"""Experiments: train one network, compare rules over a grid, the demo.

    hebbref train    --net simple --rule urfb --data fashion-mnist --epochs 10 --out runs/a
    hebbref compare  --rule bp,frfb,urfb --net simple --seed 0,1,2 --out results/rules
    hebbref demo

From Python: ``train(TrainConfig(...))`` returns the per-epoch history and the network.
"""
from .probes import angle_degrees, correlation, probe
from .train import TrainConfig, TrainingDiverged, train

__all__ = ["TrainConfig", "TrainingDiverged", "train", "probe", "angle_degrees", "correlation"]
