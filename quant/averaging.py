"""The mean of a run's weights over its last epochs (``fit``'s
``average_last``, QAT's --average-last and the FP32 stage's --swa-epochs)."""
from __future__ import annotations


class TailAverage:
    """The mean of a model's weights after each of a run's last ``k`` epochs.

    At 2 bits the weights still cross rounding boundaries at the end of the
    one-cycle schedule, so one epoch's net differs from the next by points of
    accuracy (real maps, W2A2: 87.2 to 90.9% on validation over the last five
    epochs of one run). The mean settles between them. Only floating tensors
    are averaged; counters keep their last value. Averaging quantized weights'
    float shadows keeps the model exportable: it is still one Brevitas net.
    """

    def __init__(self, epochs: int, k: int):
        if k < 0 or k > max(epochs, 0):
            raise ValueError(f"average_last must be 0..{epochs} (the epochs run), got {k}")
        self.first = epochs - k           # k = 0: no epoch reaches it
        self.sum, self.n = None, 0

    def add(self, epoch: int, model) -> None:
        if epoch < self.first:
            return
        sd = {n: t.detach().double().cpu() for n, t in model.state_dict().items() if t.is_floating_point()}
        self.sum = sd if self.sum is None else {n: self.sum[n] + t for n, t in sd.items()}
        self.n += 1

    def state(self):
        return None if not self.n else {"sum": self.sum, "n": self.n}

    def load(self, st) -> None:
        if st:
            self.sum, self.n = st["sum"], st["n"]

    def apply(self, model) -> None:
        if not self.n:
            return
        own = model.state_dict()
        model.load_state_dict({n: (self.sum[n] / self.n).to(t.dtype).to(t.device) if n in self.sum else t
                               for n, t in own.items()})
