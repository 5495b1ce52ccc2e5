"""Batch recurrent VAE over windows: GRU encoder → (μ, log σ²) → z → GRU decoder.

One global latent ``z`` per window (Fabius & van Amersfoort 2015, "Variational Recurrent
Auto-Encoders"). The decoder emits a Gaussian per point with a *learned* variance
(heteroscedastic), so the per-point negative log-likelihood is a calibrated anomaly score: a
point is anomalous when it is improbable under what the rest of the window implies, not merely
far from a mean. The KL term is annealed from 0 to ``kl_weight`` over ``kl_anneal_steps``
training forwards (Bowman et al. 2016) to avoid posterior collapse early on; ``free_bits``
keeps a floor of nats per latent dimension (Kingma et al. 2016).

Synthetic windows: :meth:`VAE.sample` decodes latents from the prior (an ex-post mixture
fitted after training); :meth:`VAE.sample_with_residuals`, what backfill uses by default,
adds to each the residual of a random training window (:meth:`VAE.residual_bank`), the
detail the decoder's means leave out.

Model file only: config + module, no I/O and no loop (nanoGPT style). ``forward(x)`` returns
``(output, loss)``; ``sample``, ``impute`` and ``score`` run under ``torch.no_grad()``.

Examples
--------
>>> import torch
>>> _ = torch.manual_seed(0)
>>> m = VAE(VAEConfig(n_channels=2, hidden=8, latent=4))
>>> out, loss = m(torch.randn(3, 10, 2))
>>> out.mean.shape, bool(torch.isfinite(loss))
(torch.Size([3, 10, 2]), True)
>>> m.sample(5, 7).shape
torch.Size([5, 7, 2])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from streamgen.models.kl import annealed_weight, free_bits_kl, gaussian_kl

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class VAEConfig:
    """Shape-defining and loss arguments; saved as ``model_args`` in checkpoints."""

    n_channels: int = 1
    hidden: int = 64
    latent: int = 16
    layers: int = 1
    kl_weight: float = 1.0
    kl_anneal_steps: int = 1000
    free_bits: float = 0.0
    # Soft floor on the decoder log-variance: without it the NLL of a perfectly smooth
    # segment runs to -inf and one flat key dominates the loss (σ ≥ e^-3.5 ≈ 0.03 z-units).
    min_logvar: float = -7.0
    # Ex-post prior: a Gaussian mixture fitted to the posterior means of the training windows
    # after training (Ghosh et al. 2020). Samples from N(0, I) land in the "holes" of the
    # aggregate posterior and decode to unrealistic windows; samples from the fitted mixture
    # do not. At most this many components, and at least 50 windows per component (fewer
    # points per full-covariance component would start to memorize). 0 = sample from N(0, I).
    prior_components: int = 30


class VAEOutput(NamedTuple):
    """Decoder Gaussian per point and the approximate posterior per window."""

    mean: torch.Tensor  # (B, T, C)
    logvar: torch.Tensor  # (B, T, C)
    z_mu: torch.Tensor  # (B, L)
    z_logvar: torch.Tensor  # (B, L)


class ResidualBank(NamedTuple):
    """Training windows' residuals, as :meth:`VAE.sample_with_residuals` uses them."""

    residuals: torch.Tensor  # (N, T, C) window minus its decoded posterior mean
    source: torch.Tensor  # (N,) position of each in the windows the bank was built from


class VAE(nn.Module):
    """Recurrent VAE; works on windows of any length ``T``."""

    steps: torch.Tensor
    prior_fitted: torch.Tensor
    prior_logits: torch.Tensor
    prior_means: torch.Tensor
    prior_scale_tril: torch.Tensor

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        c, h, lat, n = config.n_channels, config.hidden, config.latent, config.layers
        self.encoder = nn.GRU(c, h, num_layers=n, batch_first=True, bidirectional=True)
        self.to_posterior = nn.Linear(2 * h * n, 2 * lat)
        self.to_h0 = nn.Linear(lat, h * n)
        self.decoder = nn.GRU(lat, h, num_layers=n, batch_first=True)
        self.to_obs = nn.Linear(h, 2 * c)
        # Training forwards seen so far: drives KL annealing and survives checkpoints.
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        k = max(config.prior_components, 1)
        self.register_buffer("prior_fitted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("prior_logits", torch.zeros(k))
        self.register_buffer("prior_means", torch.zeros(k, lat))
        self.register_buffer("prior_scale_tril", torch.eye(lat).repeat(k, 1, 1))

    # -- pieces ------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``(μ, log σ²)``, each ``(B, L)``, of windows ``x`` ``(B, T, C)``."""
        _, h = self.encoder(x)  # (2 * layers, B, H)
        h = h.transpose(0, 1).reshape(x.shape[0], -1)  # (B, 2 * layers * H)
        mu, logvar = self.to_posterior(h).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 6.0)

    def decode(self, z: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-point Gaussian ``(mean, log σ²)``, each ``(B, T, C)``, from latents ``(B, L)``."""
        b, n, h = z.shape[0], self.config.layers, self.config.hidden
        h0 = torch.tanh(self.to_h0(z)).view(b, n, h).transpose(0, 1).contiguous()
        out, _ = self.decoder(z.unsqueeze(1).expand(b, length, z.shape[1]), h0)  # (B, T, H)
        mean, raw = self.to_obs(out).chunk(2, dim=-1)
        lo = self.config.min_logvar
        return mean, lo + F.softplus(raw - lo)

    def kl_beta(self) -> float:
        """Current KL weight: linear warm-up from 0 to ``kl_weight``."""
        return annealed_weight(int(self.steps), self.config.kl_weight, self.config.kl_anneal_steps)

    @staticmethod
    def point_nll(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Gaussian negative log-likelihood per point, summed over channels: ``(B, T)``."""
        return 0.5 * (_LOG_2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar)).sum(-1)

    # -- training ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[VAEOutput, torch.Tensor]:
        """Reconstruct ``x`` ``(B, T, C)`` and return the per-element negative ELBO (β-annealed).

        The loss is divided by ``T * C`` so the learning rate does not depend on window size.
        """
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        mean, obs_logvar = self.decode(z, x.shape[1])
        nll = self.point_nll(x, mean, obs_logvar).sum(-1).mean()
        kl = free_bits_kl(gaussian_kl(mu, logvar).mean(0), self.config.free_bits)
        beta = self.kl_beta() if self.training else self.config.kl_weight
        if self.training:
            self.steps += 1
        loss = (nll + beta * kl) / (x.shape[1] * x.shape[2])
        return VAEOutput(mean, obs_logvar, mu, logvar), loss

    # -- inference ---------------------------------------------------------------------
    @torch.no_grad()
    def neg_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Unannealed negative ELBO per element (β = ``kl_weight``, z = μ): a scalar."""
        mu, logvar = self.encode(x)
        mean, obs_logvar = self.decode(mu, x.shape[1])
        nll = self.point_nll(x, mean, obs_logvar).sum(-1)
        kl = gaussian_kl(mu, logvar).sum(-1)
        return ((nll + self.config.kl_weight * kl) / (x.shape[1] * x.shape[2])).mean()

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly scores: per-window ``(B,)`` and per-point ``(B, T)`` negative log-likelihood.

        The posterior mean is decoded (no sampling), so scores are deterministic. The window
        score is the negative ELBO: summed point NLL plus the KL of the window's posterior.
        """
        mu, logvar = self.encode(x)
        mean, obs_logvar = self.decode(mu, x.shape[1])
        point = self.point_nll(x, mean, obs_logvar)  # (B, T)
        return point.sum(-1) + gaussian_kl(mu, logvar).sum(-1), point

    def _prior_latents(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """``n`` latents from the prior: the ex-post mixture once fitted, else ``N(0, I)``."""
        dev = self.to_obs.weight.device
        z = torch.randn(n, self.config.latent, generator=generator, device="cpu").to(dev)
        if bool(self.prior_fitted):
            probs = torch.softmax(self.prior_logits.double().cpu(), 0)
            comp = torch.multinomial(probs, n, replacement=True, generator=generator).to(dev)
            z = self.prior_means[comp] + (self.prior_scale_tril[comp] @ z.unsqueeze(-1))[..., 0]
        return z

    @torch.no_grad()
    def sample(
        self, n: int, length: int, noise: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw ``n`` windows ``(n, length, C)``: ``z`` from the prior, decoded.

        The prior is the ex-post mixture once :meth:`fit_prior` has run, else ``N(0, I)``.
        ``noise=False`` returns the decoder means (the usual choice for sample quality);
        ``noise=True`` adds the learned per-point Gaussian noise.
        """
        dev = self.to_obs.weight.device
        mean, logvar = self.decode(self._prior_latents(n, generator), length)
        if noise:
            eps = torch.randn(mean.shape, generator=generator, device="cpu").to(dev)
            mean = mean + eps * torch.exp(0.5 * logvar)
        return mean

    @torch.no_grad()
    def residual_bank(
        self, x: torch.Tensor, max_windows: int = 20000, batch_size: int = 1024, seed: int = 0
    ) -> ResidualBank:
        """What the decoder leaves out of (training) windows ``x`` ``(N, T, C)``: for at most
        ``max_windows`` of them (a random subset), ``x - decode(μ)`` at the posterior mean."""
        source = torch.arange(len(x))
        if len(x) > max_windows:
            gen = torch.Generator().manual_seed(seed)
            source = torch.randperm(len(x), generator=gen)[:max_windows].sort().values
        x = x[source]
        dev = self.to_obs.weight.device
        resid = [x.new_zeros((0, *x.shape[1:])).to(dev)]
        for b in x.split(batch_size) if len(x) else ():
            b = b.to(dev)
            resid.append(b - self.decode(self.encode(b)[0], b.shape[1])[0])
        return ResidualBank(torch.cat(resid), source)

    @torch.no_grad()
    def sample_with_residuals(
        self, n: int, bank: ResidualBank, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` windows with the bank's length: a decoder mean (as :meth:`sample`) plus
        the residual of a bank window drawn at random (a residual bootstrap). Returns the
        windows and, per window, the position in the bank's source windows
        (``bank.source``) of the window whose residual it carries.

        Decoder means are smoother than the data, and the decoder's per-point variance
        measures its error rather than a noise process: added as independent noise it makes
        samples rough where the data are correlated in time. A training window's residual is
        the data's own detail, with its temporal structure. It is drawn independently of
        the sampled latent: a residual matched to a nearby latent (tried) made samples
        near-copies of training windows, since a window's decoded mean plus its own residual
        is the window itself (README, generative benchmark).
        """
        if len(bank.residuals) == 0:
            raise ValueError("sample_with_residuals: the residual bank is empty")
        length = bank.residuals.shape[1]
        mean, _ = self.decode(self._prior_latents(n, generator), length)
        pick = torch.randint(len(bank.residuals), (n,), generator=generator)
        return mean + bank.residuals[pick.to(bank.residuals.device)], bank.source[pick]

    @torch.no_grad()
    def fit_prior(self, x: torch.Tensor, batch_size: int = 1024, max_points: int = 20000) -> None:
        """Fit the ex-post mixture prior to posterior means of (training) windows ``x``."""
        k = self.config.prior_components
        if k <= 0 or len(x) < 2:
            return
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:max_points]]
        mu = torch.cat([self.encode(b)[0] for b in x.split(batch_size)])
        used = max(1, min(k, len(mu) // 50))
        w, means, tril = fit_gmm(mu.double().cpu(), used)
        # Unused component slots keep weight 0 (log -inf) so the buffers' shapes stay fixed.
        self.prior_logits.fill_(-math.inf)
        self.prior_logits[:used] = w.log()
        self.prior_means[:used] = means
        self.prior_scale_tril[:used] = tril
        self.prior_fitted.fill_(True)

    @torch.no_grad()
    def impute(
        self, x: torch.Tensor, mask: torch.Tensor, n_iter: int = 10, refine_steps: int = 100
    ) -> torch.Tensor:
        """Fill unobserved points of ``x`` ``(B, T, C)``; ``mask`` is True where observed.

        Two stages, both conditioning on the observed values only:

        1. pseudo-Gibbs (Rezende et al. 2014, §5.2), deterministic: start the missing values
           at 0 (the normalized mean) and repeat encode → decode the posterior mean → replace
           the missing values, ``n_iter`` times;
        2. MAP refinement of the latent: starting from the encoder's answer, ``refine_steps``
           Adam steps on ``z`` maximize ``log p(x_observed | z) + log N(z; 0, I)``; the
           missing values are the decoder mean at that ``z``. The encoder never saw holes
           during training, so stage 1 alone stops short; stage 2 uses the decoder's own
           likelihood, which is what "conditional generation" asks for.

        Observed values are returned unchanged. Weights are not touched (gradients are taken
        with respect to ``z`` only).
        """
        mask = mask.bool()
        observed = torch.where(mask, torch.nan_to_num(x), torch.zeros_like(x))
        filled = observed
        for _ in range(n_iter):
            mu, _ = self.encode(filled)
            mean, _ = self.decode(mu, x.shape[1])
            filled = torch.where(mask, observed, mean)
        if refine_steps <= 0:
            return filled
        z = self.encode(filled)[0].clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.05)
        weight = mask.to(x.dtype)
        with torch.enable_grad():
            for _ in range(refine_steps):
                mean, logvar = self.decode(z, x.shape[1])
                nll = 0.5 * (logvar + (observed - mean) ** 2 * torch.exp(-logvar)) * weight
                loss = nll.sum() + 0.5 * self.config.kl_weight * (z**2).sum()
                (z.grad,) = torch.autograd.grad(loss, z)
                opt.step()
        mean, _ = self.decode(z.detach(), x.shape[1])
        return torch.where(mask, observed, mean)


def fit_gmm(
    x: torch.Tensor, k: int, iters: int = 100, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-covariance Gaussian mixture by EM: weights ``(k,)``, means, Cholesky factors.

    Fewer than ``k`` distinct points reuse components (their weights then shrink); a ridge of
    1e-3 × the mean variance keeps every covariance positive definite.

    >>> w, m, L = fit_gmm(torch.randn(200, 2, dtype=torch.float64), 3)
    >>> w.shape, m.shape, L.shape, round(float(w.sum()), 6)
    (torch.Size([3]), torch.Size([3, 2]), torch.Size([3, 2, 2]), 1.0)
    """
    n, d = x.shape
    gen = torch.Generator().manual_seed(seed)
    ridge = 1e-3 * float(x.var(0).mean().clamp(min=1e-12)) * torch.eye(d, dtype=x.dtype)
    means = x[torch.randint(n, (k,), generator=gen)].clone()
    covs = (torch.cov(x.T).reshape(d, d) + ridge).expand(k, d, d).clone()
    logw = torch.full((k,), -math.log(k), dtype=x.dtype)
    for _ in range(iters):
        tril = torch.linalg.cholesky(covs)
        diff = x[:, None, :] - means[None]  # (n, k, d)
        # One triangular solve per component with n right-hand sides (not n * k tiny solves).
        sol = torch.linalg.solve_triangular(tril, diff.permute(1, 2, 0), upper=False)
        sol = sol.permute(2, 0, 1)  # (n, k, d)
        logdet = 2.0 * torch.log(torch.diagonal(tril, dim1=-2, dim2=-1)).sum(-1)  # (k,)
        logp = -0.5 * ((sol**2).sum(-1) + logdet + d * _LOG_2PI) + logw  # (n, k)
        r = torch.softmax(logp, dim=1)
        nk = r.sum(0) + 1e-10
        logw = torch.log(nk / n)
        means = (r.T @ x) / nk[:, None]
        diff = x[:, None, :] - means[None]
        covs = torch.einsum("nk,nki,nkj->kij", r, diff, diff) / nk[:, None, None] + ridge
    return logw.exp(), means, torch.linalg.cholesky(covs)
