"""Provenance primitives: invisible watermarks, C2PA signing and reading, face redaction, and
the table that maps a watermark id back to its decision.

Why a library: the release pipeline, the verify endpoint, the CLI and the video watermark all
use the same pieces; none of them needs HTTP or the pipeline to be tested.
"""

from gateway.provenance.blur import blur_regions
from gateway.provenance.c2pa_sign import (
    C2paReport,
    C2paSigner,
    ReleaseClaim,
    SignedMedia,
    SignerFaults,
    SoftwareAgent,
    read_manifest,
)
from gateway.provenance.errors import PkiError, ProvenanceError, SigningError, WatermarkError
from gateway.provenance.keys import PkiPaths, init_dev_pki
from gateway.provenance.marks import (
    MarkRegistry,
    MarkSpec,
    UnknownMarkError,
    builtin_marks,
    make_watermarker,
    new_watermark_id,
)
from gateway.provenance.models import (
    WatermarkRecord,
    lookup_watermark,
    pdq_distance,
    record_watermark,
    reserve_watermark_id,
)
from gateway.provenance.payload import DWT_PAYLOAD, RIVAGAN_PAYLOAD, PayloadCodec
from gateway.provenance.watermark import (
    DwtDctSvdWatermarker,
    RivaGanWatermarker,
    WatermarkDetection,
    Watermarker,
    WatermarkFaults,
)

__all__ = [
    "DWT_PAYLOAD", "RIVAGAN_PAYLOAD", "C2paReport", "C2paSigner", "DwtDctSvdWatermarker", "MarkRegistry",
    "MarkSpec", "PayloadCodec", "UnknownMarkError", "builtin_marks",
    "PkiError", "PkiPaths", "ProvenanceError", "ReleaseClaim", "RivaGanWatermarker", "SignedMedia",
    "SignerFaults", "SigningError", "SoftwareAgent", "WatermarkDetection", "WatermarkError",
    "WatermarkFaults", "WatermarkRecord", "Watermarker", "blur_regions", "init_dev_pki", "lookup_watermark",
    "make_watermarker", "new_watermark_id", "pdq_distance", "read_manifest", "record_watermark",
    "reserve_watermark_id",
]
