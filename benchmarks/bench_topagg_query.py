"""One DataLens query through TopAgg: today's ``torch.topk`` selection vs the linear-time one.

    python benchmarks/bench_topagg_query.py [--json PATH] [--quick] [--teachers 50]
                                            [--batch 64] [--k 12800]

A DataLens query: ``T`` teachers each hold the gradient of their discriminator loss with
respect to a batch of ``B`` generated 28x28 samples (``B x 784`` values); each keeps
its top ``k`` coordinates as stochastic signs; the votes are summed, noised and
thresholded (``adjacency="teacher"``). The default ``k = 12,800`` is DataLens's 200
coordinates per generated sample times the batch of 64.

"before" is the implementation this project shipped until this benchmark was written
(``x.abs().topk(k)``, sorted, then gather, stochastic signs, ``index_add_``), copied
here verbatim so the comparison survives it; "after" is ``TopAgg`` as it is now (the
k-th largest magnitude by introselect, then the votes read off two comparisons on the
raw float bits, in reused buffers). Both run on the same gradients; "same" checks that
both select the same coordinates and sum to the same votes. ``--quick`` uses 10
teachers and 3 repeats.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import median_time, parser, report  # noqa: E402

from ppdl_nb.dp.noise import generator  # noqa: E402
from ppdl_nb.dp.topagg import TopAgg, top_k_indices  # noqa: E402


def before_sign(x: torch.Tensor, scale: float, gen: torch.Generator) -> torch.Tensor:
    """The pre-benchmark ``stochastic_sign``, verbatim."""
    p = (x.clamp(-scale, scale) / scale + 1) / 2
    u = torch.rand(x.shape, generator=gen, dtype=x.dtype)
    return torch.where(u < p, 1.0, -1.0).to(x.dtype)


def before_query(agg: TopAgg, contributions: torch.Tensor) -> torch.Tensor:
    """The pre-benchmark ``TopAgg.__call__`` (``votes`` by sorted ``torch.topk``), verbatim
    but for the accountant, which neither side uses here."""
    gen = generator()
    n, d = contributions.shape
    k = min(agg.k, d)
    idx = contributions.abs().topk(k, dim=-1).indices
    signs = before_sign(contributions.gather(1, idx), agg.scale, gen)
    v = torch.zeros(d, dtype=contributions.dtype).index_add_(0, idx.reshape(-1),
                                                             signs.reshape(-1))
    noisy = v + torch.randn(v.shape, generator=gen, dtype=v.dtype) * agg.noise_std
    return torch.sign(noisy) * (noisy.abs() >= agg.threshold)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--teachers", type=int, default=50)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--k", type=int, default=12800)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    teachers, repeat = (10, 3) if args.quick else (args.teachers, 7)
    grads = torch.randn(teachers, args.batch * 784, generator=torch.Generator().manual_seed(0))
    sigma = 2 * math.sqrt(args.k)  # noise multiplier 1 under the teacher adjacency
    agg = TopAgg(k=args.k, scale=1e-3, noise_std=sigma, threshold=sigma, adjacency="teacher")
    same = bool(torch.equal(top_k_indices(grads, args.k).sort(1).values,
                            grads.abs().topk(args.k, dim=-1).indices.sort(1).values))
    # every kept |g| here is far above the scale, so the signs are certain: the vote sums
    # of both implementations must be equal
    idx = grads.abs().topk(args.k, dim=-1).indices
    old_votes = torch.zeros(grads.shape[1]).index_add_(
        0, idx.reshape(-1), before_sign(grads.gather(1, idx), agg.scale, generator()).reshape(-1))
    same = same and bool(torch.equal(agg.votes(grads, generator()), old_votes))
    t_before = median_time(lambda: before_query(agg, grads), repeat=repeat)
    t_after = median_time(lambda: agg(grads), repeat=repeat)
    rows = [
        {"implementation": "before (torch.topk, sorted)", "ms/query": 1e3 * t_before},
        {"implementation": "after (introselect, vote masks)", "ms/query": 1e3 * t_after,
         "speedup": t_before / t_after, "same": same},
    ]
    report(f"One DataLens query: {teachers} teachers x ({args.batch} x 784) gradients, "
           f"k = {args.k}, median of {repeat}", rows, args,
           {"teachers": teachers, "batch": args.batch, "k": args.k,
            "speedup": t_before / t_after, "same_coordinates_and_votes": same})


if __name__ == "__main__":
    main()
