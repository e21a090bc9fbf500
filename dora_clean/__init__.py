"""dora-clean: find the neurons of a vision model that learned dataset artifacts
(DORA, Bykov et al. 2022), and use them to score, review and clean the dataset.

The API (:mod:`dora_clean.api`):

- :func:`scan` (``dc.scan(folder, model)``): the whole scan; returns a :class:`ScanRun`
- :class:`ScanRun`: a run directory as an object (``ScanRun.open(path)`` for an earlier run)
- :func:`compute_artifacts`: dora-clean's fields on a FiftyOne dataset's own samples

One function a pipeline stage:

- :func:`dora_clean.models.load_model`, :class:`dora_clean.models.LayerModel`
- :func:`dora_clean.analysis.analyse_layer` (s-AMS, EA distance, infected neurons)
- :func:`dora_clean.scanning.scan_images`, :func:`dora_clean.pipeline.scan_dataset`
- :func:`dora_clean.review.to_fiftyone`, :func:`dora_clean.export.export_clean`
- :class:`dora_clean.rundir.RunDir`: every file of the run directory

and the original DORA API: :class:`Dora`.
"""
from .analysis import LayerAnalysis, analyse_layer
from .analysis.sams import SamsConfig
from .api import ScanRun, compute_artifacts, scan
from .dora import Dora
from .errors import DoraError

__all__ = ["Dora", "DoraError", "LayerAnalysis", "SamsConfig", "ScanRun", "analyse_layer", "compute_artifacts",
           "scan", "__version__"]
__version__ = "0.1.0"
