"""Step 5, the scan: list a dataset's images (:mod:`.files`), decode them (:mod:`.decode`) and
stream them through the truncated model (:mod:`.activations`)."""
from .activations import ScanResult, default_workers, scan_images, scan_key
from .decode import BadImage, load_image
from .files import ImageEntry, Skipped, list_images

__all__ = ["BadImage", "ImageEntry", "ScanResult", "Skipped", "default_workers", "list_images", "load_image",
           "scan_images", "scan_key"]
