"""Steps 1-4, DORA proper (no data needed): s-AMS (:mod:`.sams`), the layer's representations and
EA distance (:mod:`.representations`), outliers and the atlas (:mod:`.outliers`), together in
:func:`analyse_layer` (:mod:`.layer`)."""
from .layer import AnalysisOptions, LayerAnalysis, analyse_layer, check_neurons, layer_width
from .outliers import OutlierSettings

__all__ = ["AnalysisOptions", "LayerAnalysis", "OutlierSettings", "analyse_layer", "check_neurons", "layer_width"]
