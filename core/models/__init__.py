"""Model registry: ``create_model(name) -> (model, cfg)``, ``list_models()``."""
from core.models.cfg import ModelCfg
from core.models.registry import create_model, list_models, register_model, shipped_cfg

__all__ = ["ModelCfg", "create_model", "list_models", "register_model", "shipped_cfg"]
