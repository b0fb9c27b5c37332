"""Local upload folders -> object storage: ``export_files`` and ``verify_files``.

Every regular file under a source folder becomes one object keyed by
``migrate.keys.object_key(<relative path>, prefix)``, with its Content-Type and the metadata
``sha256`` and ``mtime``; every PUT is checked by the server (Content-MD5), so a corrupted
transfer is refused, retried, then reported. Re-runs skip what is already there (one LIST and a
local state file), so an export is idempotent and resumable. Chunked uploads in progress become
S3 multipart uploads with their state in the after-app's Redis.

The modules, in the order an export uses them:

- ``walk``: the upload folders -> files and their keys; names validated, specials reported
- ``target``: ``s3://bucket/prefix`` parsed, the bucket checked and listed
- ``state``: the resumable state file (what each file hashed to, its object's ETag)
- ``digests``: sha256 and the ETag S3 gives a file (plain or multipart)
- ``plan``: what is already in the bucket, what must be sent
- ``send``: small files on worker processes, large ones streamed or multipart
- ``workers``: worker processes and per-thread S3 connections
- ``transfer``: the lean signed-HTTP S3 client (boto3's per-request CPU would cap the rate)
- ``carry``: chunked uploads in progress -> S3 multipart uploads + Redis state
- ``export``: ``export_files`` and ``ExportResult``
- ``verify``: ``verify_files`` and ``VerifyResult``
"""

from migrate.files.carry import CarriedUpload
from migrate.files.digests import DEFAULT_THRESHOLD
from migrate.files.export import ExportResult, export_files
from migrate.files.transfer import MIB
from migrate.files.verify import Difference, VerifyResult, verify_files
from migrate.files.walk import FileRecord

__all__ = [
    "DEFAULT_THRESHOLD",
    "MIB",
    "CarriedUpload",
    "Difference",
    "ExportResult",
    "FileRecord",
    "VerifyResult",
    "export_files",
    "verify_files",
]
