"""PEFT baseline for bench/merge-safetensors.mjs: load a transformers checkpoint folder, load a PEFT VeRA adapter
folder on it, merge_and_unload(), save_pretrained() to OUT in the same number of shards. This is what a user runs
today to merge a VeRA adapter into a checkpoint. Prints one JSON line with the phase times (s).

  python bench/peft-merge.py CHECKPOINT_DIR PEFT_ADAPTER_DIR OUT_DIR MAX_SHARD_SIZE

Recipe: a venv with torch, transformers, peft and safetensors (see the README's benchmark section)."""
import json, sys, time

t0 = time.perf_counter()
import torch
from transformers import AutoModelForCausalLM
from peft import PeftModel

base_dir, adapter_dir, out_dir, max_shard = sys.argv[1:5]
max_shard = int(max_shard) if max_shard.isdigit() else max_shard
t_import = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16)
t_load = time.perf_counter()
model = PeftModel.from_pretrained(model, adapter_dir)
t_adapter = time.perf_counter()
model = model.merge_and_unload()
t_merge = time.perf_counter()
model.save_pretrained(out_dir, max_shard_size=max_shard)
t_save = time.perf_counter()
print(json.dumps({
    "torch": torch.__version__,
    "import": t_import - t0, "load": t_load - t_import, "adapter": t_adapter - t_load,
    "merge": t_merge - t_adapter, "save": t_save - t_merge, "total": t_save - t0,
}), flush=True)
