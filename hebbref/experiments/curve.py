"""Learning curves: the held-out accuracy and the probes, several times per epoch.

The per-epoch record of ``hebbref train`` says where a run ended each epoch; a demo
of two or three epochs then has two or three points per line. With
``evals_per_epoch = k > 0`` the loop also measures, after k evenly spaced steps of
every epoch (and once before the first step), on a fixed held-out subset:

    {"step": s, "test_accuracy": ..., "layers": {name: {"corr_WR": ..., "angle_RW": ...}}}

where s counts the SGD steps since the start of training, the accuracy is on the
first ``curve_size`` test images (validation images when there is no test set), and
the probes are those of ``hebbref.experiments.probes`` on the usual probe batch.
These points are kept in the epoch's record of DIR/log.jsonl, under ``"curve"``.

Measuring changes no weight and draws from no generator, so a run with curves
trains exactly the weights of the same run without them, and resumes bit for bit.
Its time is counted in the epoch's ``train_seconds`` (it happens between steps).
"""
from .probes import probe


def evaluation_steps(n_batches, evals_per_epoch, first_epoch):
    """The steps of an epoch after which the held-out subset is measured.

    ``evals_per_epoch`` evenly spaced steps out of 1..n_batches, the last always among
    them (at most one per step); 0 (before any step) too in the first epoch, so the
    curve starts where training starts.
    """
    k = min(evals_per_epoch, n_batches)
    steps = {-(-n_batches * i // k) for i in range(1, k + 1)}  # ceil(n·i/k): i = k gives n
    if first_epoch and k > 0:
        steps.add(0)
    return steps


class HeldOutCurve:
    """Collects one epoch's curve points; ``after_step`` is called by the loop after every step."""

    def __init__(self, net, splits, config, epoch, n_batches):
        self.net, self.config = net, config
        self.first_step = (epoch - 1) * n_batches  # steps taken before this epoch
        self.schedule = evaluation_steps(n_batches, config.evals_per_epoch, epoch == 1)
        if len(splits.y_test):
            self.x, self.y = splits.x_test[:config.curve_size], splits.y_test[:config.curve_size]
        else:
            self.x, self.y = splits.x_val[:config.curve_size], splits.y_val[:config.curve_size]
        m = min(config.probe_size, len(splits.x_train))
        self.x_probe, self.y_probe = splits.x_train[:m], splits.y_train[:m]
        self.points = []
        if len(self.y):
            self.after_step(0)

    def after_step(self, step):
        """Measure if ``step`` (steps done in this epoch) is on the schedule."""
        if step not in self.schedule or not len(self.y):
            return
        point = {"step": self.first_step + step, "test_accuracy": self.net.accuracy(self.x, self.y)}
        if len(self.y_probe):
            point["layers"] = probe(self.net, self.x_probe, self.y_probe, self.config.loss, self.config.mu)
        self.points.append(point)

    def record(self):
        """What goes into the epoch's record: ``{"curve": points}``, or nothing without points."""
        return {"curve": self.points} if self.points else {}
