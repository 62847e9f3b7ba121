"""Why C stalled at cpu128 (issue 19): the spread of each ReLU's output at init, on 64 centre
crops of the val set, for the trained A and for B-E started from A's layers (Sect. 3.1) with
the rest from the gain-matched N(0, 0.01) ("normal"), Glorot ("glorot", chosen) or He.
Run from the repository root: python runs/cpu128-pilot/init_scale.py (output: init_scale.txt)."""
import glob, random, torch, torch.nn as nn
from torchvision.io import decode_jpeg, read_file, ImageReadMode
from vgg import model as M, data as D
from vgg.rundir import RunDir
torch.manual_seed(0); torch.set_num_threads(1)
files = sorted(glob.glob("data/imagenette2-320/val/*/*.JPEG")); random.Random(0).shuffle(files)
imgs = []
for f in files[:64]:
    im = decode_jpeg(read_file(f), mode=ImageReadMode.RGB)
    im = D.rescale(im, 146); h, w = im.shape[-2:]; t, l = (h - 128) // 2, (w - 128) // 2
    imgs.append(im[:, t:t+128, l:l+128])
x = torch.stack(imgs).float(); x = x - x.mean((0, 2, 3), keepdim=True)
y = torch.tensor([sorted(set(f.split('/')[-2] for f in files)).index(f.split('/')[-2]) for f in files[:64]])
A = M.build("A", 10, 0.125, 128); RunDir("runs/cpu128/A-S256-s0").load_into(A); A.eval()

def he(model, copied):
    for n, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in copied:
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu"); nn.init.zeros_(m.bias)

def trace(model):
    out = []; h = x
    for m in model.features:
        h = m(h)
        if isinstance(m, nn.ReLU): out.append(h.std().item())
    z = h.flatten(1)
    for m in model.classifier:
        z = m(z)
    return out, z.std().item(), nn.functional.cross_entropy(z, y).item()

def grads(model):
    model.train(); model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    g = [m.weight.grad.norm().item() / m.weight.norm().item() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval(); return g

print("A trained  ", ["%.3g" % v for v in trace(A)[0]], "logit sd %.3g loss %.3f" % trace(A)[1:])
for net in ("B", "C", "D", "E"):
    for scheme in ("normal", "glorot", "he"):
        torch.manual_seed(0)
        m = M.build(net, 10, 0.125, 128)
        copied = M.init_paper(m, A, gain_matched=True, rest="normal" if scheme == "he" else scheme)
        if scheme == "he": he(m, copied)
        m.eval(); acts, sd, loss = trace(m); g = grads(m)
        print(f"{net} {scheme:7s}", ["%.3g" % v for v in acts], "logit sd %.3g loss %.3f" % (sd, loss),
              "| rel grad min %.2g max %.2g" % (min(g), max(g)))
