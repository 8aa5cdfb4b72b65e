"""Interoperability check against Python's huggingface_hub and PEFT (run by interop.ts, not by CI).

argv: MODE REPO ...   with HF_ENDPOINT / HF_TOKEN / HF_HUB_CACHE set by the caller.
  cache-read  REPO SHA256   : the cache verakit wrote is found by hf_hub_download(local_files_only=True)
  download    REPO          : hf_hub_download from the loopback server (fills HF_HUB_CACHE for verakit to read)
  peft-load   REPO CONFIG   : PeftModel.from_pretrained(base, REPO) through the loopback server, values checked
Prints one JSON line.
"""
import hashlib
import json
import sys

from huggingface_hub import hf_hub_download

mode, repo = sys.argv[1], sys.argv[2]
out = {"mode": mode}
if mode == "cache-read":
    p = hf_hub_download(repo, "adapter.vera.safetensors", local_files_only=True)
    out["path"] = p
    out["sha256_ok"] = hashlib.sha256(open(p, "rb").read()).hexdigest() == sys.argv[3]
elif mode == "download":
    for f in ["adapter.vera.safetensors", "README.md"]:
        out[f] = hf_hub_download(repo, f)
elif mode == "peft-load":
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig.from_json_file(sys.argv[3]))
    model = PeftModel.from_pretrained(base, repo)
    vera = load_file(hf_hub_download(repo, "adapter.vera.safetensors"))
    sd = model.state_dict()
    checked = 0
    for k, v in vera.items():
        if k.endswith(".vera_lambda_b") or k.endswith(".vera_lambda_d"):
            peft_key = "base_model.model." + k + ".default" if ("base_model.model." + k + ".default") in sd else "base_model.model." + k
            assert torch.equal(sd[peft_key].float(), v.float()), k
            checked += 1
    y = model(torch.tensor([[1, 2, 3]])).logits
    out.update({"loaded": True, "vectors_checked": checked, "logits_finite": bool(torch.isfinite(y).all())})
print(json.dumps(out))
