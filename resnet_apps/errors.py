"""Typed errors for resnet_apps.

Every error says what went wrong, *where* (the file, the field) and *what to do*. Callers catch
``ResnetAppsError`` to report bad input without a traceback; the CLI prints ``str(error)`` and exits 2.

This module imports nothing heavy: ``io``, ``recipe`` and ``report`` (torch-free layers) use it.
Add new error classes at the end of the relevant section, with a one-line docstring.
"""

from __future__ import annotations


class ResnetAppsError(Exception):
    """Base class of every error this package raises on purpose."""


# --- backbones and weights -------------------------------------------------------------------


class UnknownBackboneError(ResnetAppsError, ValueError):
    """A backbone name that is not a ResNet-family model known to timm."""


class WeightsUnavailableError(ResnetAppsError):
    """Pretrained weights were asked for but cannot be found locally nor downloaded."""


class WeightsFormatError(ResnetAppsError):
    """A weights file that cannot be read or whose keys do not match the backbone."""


class ChecksumError(ResnetAppsError):
    """A file whose sha256 differs from the one recorded when it was fetched."""


# --- domain input / output (no torch) --------------------------------------------------------


class ImageReadError(ResnetAppsError):
    """A file that cannot be read as an image (corrupt, truncated, unknown format)."""


class DicomError(ImageReadError):
    """A DICOM file that cannot be turned into display-ready pixels."""


class MissingCodecError(DicomError):
    """The transfer syntax needs a decoder plugin that is not installed."""


class NoPixelDataError(DicomError):
    """A DICOM object without an image (structured report, presentation state, ...)."""


class UnsupportedSyntaxError(DicomError):
    """A transfer syntax that no installed (nor installable) decoder of ours handles: convert the file."""


class PixelBudgetError(ImageReadError):
    """An image whose header claims more pixels than the budget (``data.max_pixels`` / ``--max-pixels``)."""


class GeoTiffError(ImageReadError):
    """A GeoTIFF that cannot be read as asked (missing bands, bad window, ...)."""


class BandError(GeoTiffError):
    """Bands asked for that the file does not have."""


class RemoteReadError(GeoTiffError):
    """A remote raster (HTTP(S), S3) that could not be opened or read after GDAL's retries with backoff."""


class StacError(ResnetAppsError):
    """A STAC item, catalogue or search that cannot be read, or whose assets do not give the model's bands."""


# --- datasets and splits ---------------------------------------------------------------------


class DatasetError(ResnetAppsError):
    """A dataset that cannot be built: missing files, empty folders, bad index CSV."""


class MaskMismatchError(DatasetError):
    """A segmentation mask whose size differs from its image."""


class LeakageError(DatasetError):
    """A patient or spatial group found in more than one split."""


class NoValidPixelsError(DatasetError):
    """An image whose every pixel is nodata, NaN or padding (an all-nodata chip)."""


class DataCardError(ResnetAppsError):
    """A data card (``data_cards/<name>.md``) that is missing, unparsable or lacks a required field."""


# --- recipes, runs, checkpoints ----------------------------------------------------------------


class RecipeError(ResnetAppsError):
    """A recipe file with an unknown key, a wrong type or an impossible value."""


class RunDirError(ResnetAppsError):
    """A run directory that exists (and is not being resumed) or is not one of ours."""


class RunLockedError(RunDirError):
    """Another live process is training in this run directory (its lock file names the pid)."""


class HashKeyError(ResnetAppsError):
    """The secret key of the identifier hash cannot be read or created."""


class CheckpointError(ResnetAppsError):
    """A checkpoint that is missing, incomplete or written by an incompatible version."""


class TrainingDivergedError(ResnetAppsError):
    """Training produced a NaN or infinite loss; the last good checkpoint was kept."""

    loss: float = float("nan")  # the offending loss value, set where it was computed


# --- data fetching ------------------------------------------------------------------------------


class FetchError(ResnetAppsError):
    """A dataset or weights download that failed after its retries."""


class ArchiveTooLargeError(FetchError):
    """An archive that would expand beyond the size or compression-ratio cap (a decompression bomb)."""


# --- metrics and reports (no torch) ------------------------------------------------------------


class MetricsError(ResnetAppsError, ValueError):
    """Arrays given to a metric that have the wrong shape, range or labels."""


class OutputWriteError(ResnetAppsError):
    """An output folder or file that cannot be written: read-only, not a folder, or a full disk."""


class ScenePredictionError(ResnetAppsError):
    """The reader or writer thread of scene prediction failed; the cause is chained and no map is left
    under its final name."""


class ManifestError(ResnetAppsError):
    """A scene manifest that cannot be read, a bad ``--shard i/N``, or torchrun variables that do not agree."""


class MapValidationError(ResnetAppsError):
    """A written map that fails the Cloud-Optimised GeoTIFF validator or lacks CRS, nodata, overviews or
    its legend; the scene is recorded as failed and redone by the next run."""


class ReportError(ResnetAppsError):
    """A metrics.json that is missing, invalid for its schema, or a report that cannot be written."""


# --- prediction and export -----------------------------------------------------------------------


class ExportError(ResnetAppsError):
    """An exported model that cannot be written or whose outputs differ from PyTorch's beyond tolerance."""


# --- PACS (DICOMweb) -------------------------------------------------------------------------------


class DicomWebError(ResnetAppsError):
    """A DICOMweb server that refused, failed (5xx) or dropped the connection after bounded retries."""
