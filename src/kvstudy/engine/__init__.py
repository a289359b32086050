"""The eval engine: one model load and one prefill per sample for a group of press variants.

A prefill-time press in kvpress compresses a layer's cache after that layer has attended over the whole context, so
everything a press looks at is the same whatever the press: one prefill of a sample can feed every prefill-invariant
variant of a *prefill class* (same attention implementation, same prefilled tokens). Modules:

- `prefill`: a sample's prefill, own (the press acts inside it) or shared (kept per layer as kvpress's hook gets it),
  and each variant's cache from it;
- `generate`: the question and greedy answer after a cache;
- `group`: the loop over samples and variants of a group job, errors and out-of-memory kept per variant;
- `job`: a group job (one model load, the task kind's runner, one raw result per variant);
- `result`: what every raw result shares (job keys, efficiency and its timing attribution).

Task kinds plug in as runners: `kvstudy.evaluate.Generation`, `kvstudy.perplexity.Perplexity`. docs/engine.md has
the design and its measurements.
"""
