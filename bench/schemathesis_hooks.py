"""Generators schemathesis cannot derive from the OpenAPI document by itself.

`If-Match` is declared with `"format": "entity-tags"` beside its pattern. The
pattern states the grammar for every reader of the document; this format gives
schemathesis a generator for it, because its own header generator makes letters
and digits only and skips patterns that need anything else (an entity tag is
quoted), and would then send a non-matching If-Match labelled as valid.
"""

import schemathesis
from hypothesis import strategies as st

# etagc (RFC 9110): %x21 / %x23-7E.
_ETAGC = [chr(0x21)] + [chr(c) for c in range(0x23, 0x7F)]
_TAG = st.builds(
    lambda weak, body: ("W/" if weak else "") + '"' + body + '"',
    st.booleans(),
    st.one_of(st.sampled_from(["v1", "v2", "v3"]), st.text(alphabet=_ETAGC, max_size=12)),
)
_OWS = st.sampled_from(["", " ", "\t "])

schemathesis.openapi.format(
    "entity-tags",
    st.one_of(
        st.just("*"),
        st.builds(lambda sep, tags: ("," + sep).join(tags), _OWS, st.lists(_TAG, min_size=1, max_size=3)),
    ),
)
