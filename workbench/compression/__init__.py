"""Structural compression and transfer across it: LLM-Pruner's dependency-group pruning by importance,
and LoRAM's recovery of a LoRA trained on the pruned model to the full model.

    pruned = prune(model, 0.25, method="taylor", batch=calib)   # a pruned copy + index map
    save_pruned(pruned, "out/")                                  # a normal transformers directory
    full_adapter = recover(adapter_on_pruned, pruned.map)        # LoRAM: zero-filled, GQA-expanded

Reference: Ma et al., "LLM-Pruner: On the Structural Pruning of Large Language Models", NeurIPS 2023;
Zhang et al., "Train Small, Infer Large: Memory-Efficient LoRA Training for Large Language Models"
(LoRAM), ICLR 2025. Deviations are written in each module.
"""

from workbench.compression.curve import ratio_curve, token_loss
from workbench.compression.frame import importance_frame
from workbench.compression.groups import ATTENTION_MODES, GroupSet, Member, group_sets
from workbench.compression.importance import AGGREGATIONS, IMPORTANCE, element_scores, group_scores
from workbench.compression.index_map import LayerMap, PruneMap
from workbench.compression.loram import recover
from workbench.compression.prune import Pruned, prune
from workbench.compression.saving import load_pruned, save_pruned

__all__ = ["AGGREGATIONS", "ATTENTION_MODES", "IMPORTANCE", "GroupSet", "LayerMap", "Member", "PruneMap",
           "Pruned", "element_scores", "group_scores", "group_sets", "importance_frame", "load_pruned",
           "prune", "ratio_curve", "recover", "save_pruned", "token_loss"]
