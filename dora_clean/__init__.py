"""dora-clean: find the neurons of a vision model that learned dataset artifacts
(DORA, Bykov et al. 2022), and use them to score, review and clean the dataset.

The functional API, one function a pipeline stage:

- :func:`dora_clean.models.load_model`, :class:`dora_clean.models.LayerModel`
- :func:`dora_clean.analysis.analyse_layer` (s-AMS, EA distance, infected neurons)
- :func:`dora_clean.scan.scan_images`, :func:`dora_clean.run.scan_dataset`
- :func:`dora_clean.review.to_fiftyone`, :func:`dora_clean.export.export_clean`

and the original DORA API: :class:`Dora`.
"""
from .analysis import LayerAnalysis, analyse_layer
from .dora import Dora
from .errors import DoraError
from .analysis.sams import SamsConfig

__all__ = ["Dora", "DoraError", "LayerAnalysis", "SamsConfig", "analyse_layer", "__version__"]
__version__ = "0.1.0"
