"""An exponential moving average (EMA) of the weights, kept beside the training weights.

After every optimizer step:   ema <- ema + (1 - d_t) * (w - ema),   d_t = min(decay, (1 + t) / (10 + t))
where t counts the updates made so far. The average over the last ~1 / (1 - decay) steps smooths out the
noise of the last few mini-batches, which at a small batch and a learning rate that is still 10% of its peak
at the end (configs/text2sql_cpu.json) moves the final weights a long way from step to step. The warm-up
term (1 + t) / (10 + t) keeps the first averages close to the current weights instead of to the random
initialisation (with a fixed d the initial weights would still weigh d^t, e.g. 0.999^1000 = 37% after 1000
steps).

The average is kept in fp32 (the weights' own dtype; autocast only changes the matmuls), is written into the
checkpoint as "ema" next to "model" (the training weights, which --resume continues from), and inference
(`train.checkpoint.inference_weights`: sampling, evaluation, export, fine-tuning's init_from) uses it when it is there.
"""
from __future__ import annotations

import torch


class WeightEMA:
    def __init__(self, model: torch.nn.Module, decay: float, state: dict | None = None, updates: int = 0):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = updates
        self.names = [n for n, p in model.named_parameters()]
        params = dict(model.named_parameters())
        source = state if state is not None else {n: p.detach() for n, p in params.items()}
        self.shadow = {n: source[n].detach().to(params[n].device, torch.float32).clone() for n in self.names}
        self._params = [params[n] for n in self.names]
        self._shadow = [self.shadow[n] for n in self.names]

    def rate(self) -> float:
        """1 - d_t of the next update."""
        return 1.0 - min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._shadow, [p.detach().float() for p in self._params], self.rate())
        self.updates += 1

    def state_dict(self, model: torch.nn.Module) -> dict:
        """A full model state dict (parameters averaged, any buffers as they are now), on the CPU."""
        out = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        for n in self.names:
            out[n] = self.shadow[n].to(out[n].dtype).cpu().clone()
        return out

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the model's weights and the averaged ones (call twice to swap back): evaluation of the
        average without a second model."""
        for p, s in zip(self._params, self._shadow):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)

