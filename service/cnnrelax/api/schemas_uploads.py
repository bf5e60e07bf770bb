"""The bodies of the uploads in parts (``/v1/datasets/uploads``): the request that declares an upload, the upload as
answered (with the parts still missing, so a client resumes from it), a part as received.

The declared shape is defined once (:class:`UploadShape`) and inherited by the request (strict: an unknown member
is a 422) and by the answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Optional

from pydantic import BaseModel, Field

from ..results import Sent
from ..validation import MAX_EXACT_INTEGER
from .schemas import DATASET_ID_PATTERN, _Strict

#: An upload's id: 32 hex digits (a random UUID's).
UPLOAD_ID_PATTERN = r"^[0-9a-f]{32}$"
#: The most parts one upload may have (as S3's multipart uploads): an upload's answer lists its missing parts.
MAX_UPLOAD_PARTS = 10_000
#: The states of an upload.
UploadStatus = Literal["receiving", "completed"]


class UploadShape(BaseModel):
    """What an upload declares: the shape of ``X``, the numbers' type, the rows of a part, the content digest."""

    n: int = Field(ge=1, description="Rows of X (samples); y has as many labels.")
    d: int = Field(ge=1, description="Columns of X.")
    dtype: Literal["float64"] = Field("float64", description="The type of every number in a part's body: "
                                                             "little-endian IEEE 754 binary64 (the only one taken).")
    part_rows: int = Field(ge=1, le=MAX_EXACT_INTEGER,
                           description="Rows in each part: part i holds rows [i part_rows, min(n, (i + 1) "
                                       "part_rows)); its body is those rows of X (row after row, d numbers "
                                       "each) followed by their labels y. At most 10000 parts; a full "
                                       "part's body at most CNNRELAX_MAX_BODY_BYTES.")
    sha256: Optional[str] = Field(None, pattern=DATASET_ID_PATTERN,
                                  description="The content digest the completed dataset must have (its id: "
                                              "sha256 of `cnnrelax-dataset-v1:{n}x{d}:`, then X's bytes, then "
                                              "y's); completing an upload with other content is a 422. Absent "
                                              "from an answer when none was declared.")


class UploadCreate(_Strict, UploadShape):
    """``POST /v1/datasets/uploads``: declare an upload in parts; it is priced whole before anything is stored."""


class UploadOut(Sent, UploadShape):
    """An upload in parts: what it declared, the parts received and missing, what it became."""

    id: str = Field(pattern=UPLOAD_ID_PATTERN, description="The upload's id.")
    status: UploadStatus = Field(description="`receiving` parts, or `completed` (its dataset exists: `dataset_id`).")
    parts: int = Field(ge=1, le=MAX_UPLOAD_PARTS, description="How many parts the upload has (ceil(n / part_rows)).")
    part_bytes: int = Field(ge=16, description="The body's length of a full part: part_rows (d + 1) 8 bytes (the "
                                               "last part may be shorter).")
    received_parts: int = Field(ge=0, description="How many parts have arrived.")
    missing_parts: list[int] = Field(description="The indexes of the parts not received yet, ascending: what to "
                                                 "send to resume the upload.")
    dataset_id: Optional[str] = Field(None, pattern=DATASET_ID_PATTERN,
                                      description="The dataset the upload became (only once completed).")
    created_at: datetime
    expires_at: datetime = Field(description="When the upload is deleted if no part arrives before "
                                             "(CNNRELAX_UPLOAD_EXPIRY_S after its last part).")


class UploadPage(Sent):
    """The caller's uploads in parts, newest first."""

    items: list[UploadOut]


class UploadPartOut(Sent):
    """A part as received (the same answer when the same bytes are sent again)."""

    upload_id: str = Field(pattern=UPLOAD_ID_PATTERN)
    index: int = Field(ge=0, description="The part's index.")
    first_row: int = Field(ge=0, description="The row of X its first row is.")
    rows: int = Field(ge=1, description="Its rows.")
    size_bytes: int = Field(ge=16, description="Its body's length: rows (d + 1) 8 bytes.")
    sha256: str = Field(pattern=DATASET_ID_PATTERN, description="The SHA-256 of its body (hex).")
