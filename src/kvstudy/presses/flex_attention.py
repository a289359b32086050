"""FlexAttention (`attn_implementation: flex_attention`) under kvpress's attention patch.

kvpress wraps every attention function of transformers on import (`kvpress.attention_patch`) and calls the wrapped
one as `func(module, query, key, value, attention_mask, dropout, **kwargs)`. transformers' `flex_attention_forward`
takes no dropout: its sixth positional parameter is `scaling`, which the model also passes by keyword, so every
forward fails ("got multiple values for argument 'scaling'"), with or without a press. Here the flex entry is
replaced by a call of transformers' own function without the dropout. kvpress's per-head key masking (the masking
presses) is not available under flex: the config refuses those pairs before any job runs (kvstudy.config), and a
masked step reaching this function raises.
"""

from __future__ import annotations

NAME = "flex_attention"
_installed = False


def install() -> None:
    """Replace the flex attention function kvpress's patch broke (once per process; imports kvpress first so that
    its patch, applied on import, cannot come after this one)."""
    global _installed
    if _installed:
        return
    import kvpress  # noqa: F401  (patches ALL_ATTENTION_FUNCTIONS on import)
    from transformers.integrations.flex_attention import flex_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def flex(module, query, key, value, attention_mask, dropout=0.0, **kwargs):
        if getattr(module, "masked_key_indices", None) is not None and query.shape[2] != key.shape[2]:
            raise NotImplementedError("flex_attention: presses that mask keys per head (AdaKV, DuoAttention) "
                                      "need sdpa or flash_attention_2")
        return flex_attention_forward(module, query, key, value, attention_mask, **kwargs)

    ALL_ATTENTION_FUNCTIONS[NAME] = flex
    _installed = True


def prepare(attn_implementation: str) -> None:
    """Install the fix when a model is loaded or switched to flex attention."""
    if attn_implementation == NAME:
        install()
