"""One layer of a model: reaching it by path (:mod:`.modules`), the model's layer table (:mod:`.table`), and one layer
under a microscope — spectra, output error versus rank, rebuilt at a rank (:mod:`.study`)."""
from core.layers.modules import layer_input, layer_inputs, set_module, weighted_layers

__all__ = ["layer_input", "layer_inputs", "set_module", "weighted_layers"]
