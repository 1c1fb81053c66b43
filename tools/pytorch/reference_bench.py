#!/usr/bin/env python3
"""PyTorch reference side of `bench ... torch-forward` and `bench ... finetune-step` (not needed by CI).

Runs torchvision's architecture with random weights, batch 32, the given thread count:
  forward:  eval, frozen, torch.no_grad(), channels_last model and input, pooled features (fc/classifier removed).
  finetune: a Linear head on the pooled features, BatchNorm in inference mode (model.eval()), Adam, cross-entropy; the
            whole backbone trainable, or only the blocks from --from on (earlier parameters requires_grad=False, as in
            PyTorch's fine-tuning tutorials; the optimizer holds only trainable parameters).
One JSON object per line on stdout. With --serve it builds the model once, then for each line "run" read from stdin
times --steps steps (after nothing: warm-up is the caller's first "run") and prints {"seconds": [...]} , so a caller can
alternate repetitions with its own. Without --serve it runs --reps repetitions and prints a summary.

Run with /usr/bin/python3 (Debian's python3-torch 1.13 / python3-torchvision 0.14).
"""
import argparse
import json
import os
import sys
import time


def build(args):
    import torch
    import torchvision

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.arch)()
    if args.arch.startswith("resnet"):
        features = model.fc.in_features
        model.fc = torch.nn.Identity()
    else:
        features = model.classifier[-1].in_features
        model.classifier = torch.nn.Identity()
    memory_format = torch.channels_last if args.memory_format == "channels_last" else torch.contiguous_format
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=memory_format)
    if args.mode == "forward":
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        model = model.to(memory_format=memory_format)

        def step():
            with torch.no_grad():
                model(x).sum().item()

        return step

    head = torch.nn.Linear(features, args.classes)
    labels = torch.randint(0, args.classes, (args.batch,))
    trainable_from = None
    if args.from_block:
        names = [n for n, _ in model.named_children()]
        if args.from_block not in names:
            sys.exit(f"no block {args.from_block!r}; blocks: {names}")
        trainable_from = names.index(args.from_block)
        for i, (_, child) in enumerate(model.named_children()):
            for p in child.parameters():
                p.requires_grad_(i >= trainable_from)
    model = model.to(memory_format=memory_format)
    model.eval()  # BatchNorm in inference mode, as the library's default fine-tuning
    head.train()
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-5)
    loss_fn = torch.nn.functional.cross_entropy

    def step():
        logits = head(model(x))
        loss = loss_fn(logits, labels)
        optimizer.zero_grad(set_to_none=True)  # PyTorch 2.x default; 1.13 zeroes by default (slower)
        loss.backward()
        optimizer.step()
        loss.item()
        (logits.argmax(1) == labels).sum().item()

    step.trainable = sum(p.numel() for p in params)
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["forward", "finetune"], required=True)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--from", dest="from_block", default=None, help="finetune: first trainable block (e.g. layer4)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (batches) per repetition")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--memory-format", choices=["channels_last", "contiguous"], default="channels_last")
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args()

    import torch
    import torchvision

    step = build(args)
    info = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "default",
        "memory_format": args.memory_format,
        "trainable_parameters": getattr(step, "trainable", 0),
    }

    def rep():
        seconds = []
        for _ in range(args.steps):
            start = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - start)
        return seconds

    if args.serve:
        print(json.dumps({"ready": True, **info}), flush=True)
        for line in sys.stdin:
            if line.strip() != "run":
                break
            print(json.dumps({"seconds": rep()}), flush=True)
        return

    step()  # warm-up
    reps = [sum(rep()) / args.steps for _ in range(args.reps)]
    reps.sort()
    median = reps[len(reps) // 2] if len(reps) % 2 else (reps[len(reps) // 2 - 1] + reps[len(reps) // 2]) / 2
    print(json.dumps({**info, "seconds_per_step": reps, "median_seconds_per_step": median,
                      "images_per_second": args.batch / median}))


if __name__ == "__main__":
    main()
