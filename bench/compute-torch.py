"""PyTorch baseline for bench/compute.mjs: reads one JSON request per line on stdin, answers one JSON
line per request on stdout. Measures, in the weight dtype and with the thread count asked for:
  addmm: torch.addmm(W32, B', A) on float32 (the GEMM + add kernel, fresh result tensor)
  merge: what PEFT's VeRA merge runs on CPU: W += ((lambda_b * B) @ (lambda_d * A)).to(W.dtype)
Recipe: python3 -m venv .venv-ref && .venv-ref/bin/pip install torch   (torch with MKL)."""
import json, sys, time
import torch

def best_and_median(fn, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[0], ts[len(ts) // 2]

def main():
    print(json.dumps({"ready": True, "torch": torch.__version__, "mkl": torch.backends.mkl.is_available(),
                      "threads": torch.get_num_threads()}), flush=True)
    cache = {}
    for line in sys.stdin:
        req = json.loads(line)
        torch.set_num_threads(req["threads"])
        o, n, r = req["out"], req["in"], req["rank"]
        key = (o, n, r, req["dtype"])
        if key not in cache:
            cache.clear()
            torch.manual_seed(0)
            dt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[req["dtype"]]
            A = torch.rand(r, n) - 0.5; B = torch.rand(o, r) - 0.5
            lb = torch.rand(o) * 0.1; ld = torch.rand(r)
            W32 = torch.rand(o, n) - 0.5
            cache[key] = (dt, A, B, lb, ld, W32, W32.to(dt), lb.unsqueeze(-1) * B * ld.unsqueeze(0))
        dt, A, B, lb, ld, W32, W, Bp = cache[key]
        flops = 2.0 * o * r * n
        out = {}
        for what in req["what"]:
            if what == "addmm":
                fn = lambda: torch.addmm(W32, Bp, A)
            else:
                def fn():
                    delta = (lb.unsqueeze(-1) * B) @ (ld.unsqueeze(-1) * A)
                    W.data += delta.to(dt)
            if req.get("warmup", True):
                fn()
            b, m = best_and_median(fn, req["reps"])
            out[what] = {"best_s": b, "median_s": m, "gflops_best": flops / b / 1e9, "gflops_median": flops / m / 1e9}
        print(json.dumps(out), flush=True)

main()
