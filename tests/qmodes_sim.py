"""Independent simulation of qualm fp16 / dynamic .qlm files (torch + numpy),
used by tests/qmodes_torch.sh (written during issue 3 by a second helper as
an outside check of the modes branch).

Reads the file from its documented layout (container, META, MGRF, HPRM or
DPRM), rebuilds the network and runs the input dump through it:
  fp16:    x rounded to binary16, every node output rounded to binary16
  dynamic: conv/linear input quantized per batch (TFLite asymmetric int8),
           exact integer accumulation, float dequant s_x*s_w[c], float bias
Compares with qualm predict's output dump.
usage: qmodes_sim.py MODEL.qlm IN.bin OUT.bin [batch [min_exact_percent]]
Exits 1 when fewer than min_exact_percent of the logits are identical, or
(with min_exact_percent < 0) when MORE than -min_exact_percent are: the
negative control that shows the comparison can fail.
"""
import struct, sys, zlib
import numpy as np
import torch
import torch.nn.functional as F

CONV, BN, RELU, RELU6, ADD, GAP, AVGP, MAXP, LIN, DROP, FLAT, SMAX, LSMAX = range(1, 14)


def read(path):
    b = open(path, 'rb').read()
    assert b[:8] == b'QUALMQLM'
    hb, total, nsec = struct.unpack_from('<IQI', b, 12)
    assert total == len(b)
    assert struct.unpack_from('<I', b, len(b) - 4)[0] == zlib.crc32(b[:-4]) & 0xffffffff
    off, secs = hb, {}
    for _ in range(nsec):
        tag, _r, ln = struct.unpack_from('<4sIQ', b, off)
        secs[tag.decode()] = b[off + 16: off + 16 + ln]
        off += 16 + ((ln + 7) & ~7)
    return secs


def nodes_of(mgrf):
    n = struct.unpack_from('<I', mgrf, 0)[0]
    out = []
    for i in range(n):
        p = 8 + 128 * i
        kind, nin, i0, i1 = struct.unpack_from('<Iiii', mgrf, p)
        kh, kw, sh, sw, ph, pw, groups, outc, hasb = struct.unpack_from('<9i', mgrf, p + 16)
        h, w, c = struct.unpack_from('<3i', mgrf, p + 64)
        out.append(dict(kind=kind, nin=nin, ins=[i0, i1][:nin], kh=kh, kw=kw, sh=sh, sw=sw, ph=ph,
                        pw=pw, g=groups, outc=outc, hasb=hasb, h=h, w=w, c=c))
    return out


def weight_count(nodes, i):
    nd = nodes[i]
    if nd['kind'] not in (CONV, LIN):
        return 0
    src = nodes[nd['ins'][0]]
    if nd['kind'] == CONV:
        return nd['outc'] * nd['kh'] * nd['kw'] * (src['c'] // nd['g'])
    if nd['kind'] == LIN:
        return nd['outc'] * src['h'] * src['w'] * src['c']
    return 0


def r16(t):
    return t.half().float()


def tflite_qparams(lo, hi):
    rmin, rmax = min(float(lo), 0.0), max(float(hi), 0.0)
    if rmax - rmin < np.finfo(float).eps:
        return 1.0, -128
    scale = (rmax - rmin) / 255.0
    zmin, zmax = -128 - rmin / scale, 127 - rmax / scale
    emin, emax = 128 + abs(rmin / scale), 127 + abs(rmax / scale)
    zp = zmin if emin < emax else zmax
    zp = -128 if zp < -128 else 127 if zp > 127 else int(np.sign(zp) * np.floor(abs(zp) + 0.5))
    return float(np.float32(scale)), zp


def quantize(x, scale, zp):  # float32 division, round half away from zero
    v = (x.numpy().astype(np.float32) / np.float32(scale)).astype(np.float64)
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zp
    return np.clip(q, -128, 127).astype(np.int64)


def run(path, x_nhwc, batch):
    secs = read(path)
    meta = secs['META'].decode()
    nodes = nodes_of(secs['MGRF'])
    dyn = 'dtype=dynamic' in meta
    # parameter slices in node order: weights, then bias
    wts, biases = {}, {}
    if not dyn:
        cnt = struct.unpack_from('<Q', secs['HPRM'], 0)[0]
        prm = np.frombuffer(secs['HPRM'], '<f2', cnt, 8).astype(np.float32)
        off = 0
        for i, nd in enumerate(nodes):
            nw = weight_count(nodes, i)
            if nw:
                wts[i] = prm[off: off + nw]; off += nw
                if nd['hasb']:
                    biases[i] = prm[off: off + nd['outc']]; off += nd['outc']
        assert off == cnt, (off, cnt)
    else:
        d = secs['DPRM']
        nw8, nsc, nf = struct.unpack_from('<3Q', d, 0)
        w8 = np.frombuffer(d, np.int8, nw8, 24).astype(np.int64)
        o = 24 + ((nw8 + 7) & ~7)
        sc = np.frombuffer(d, '<f4', nsc, o)
        fl = np.frombuffer(d, '<f4', nf, o + 4 * nsc)
        ow = os_ = of = 0
        for i, nd in enumerate(nodes):
            nw = weight_count(nodes, i)
            if nw:
                wts[i] = (w8[ow: ow + nw], sc[os_: os_ + nd['outc']]); ow += nw; os_ += nd['outc']
                if nd['hasb']:
                    biases[i] = fl[of: of + nd['outc']]; of += nd['outc']
        assert (ow, os_, of) == (nw8, nsc, nf)
    outs = []
    for s in range(0, x_nhwc.shape[0], batch):
        outs.append(forward(nodes, wts, biases, torch.from_numpy(x_nhwc[s:s + batch]), dyn))
    return torch.cat(outs).numpy()


def forward(nodes, wts, biases, x, dyn):
    v = [None] * len(nodes)
    v[0] = x if dyn else r16(x)
    for i, nd in enumerate(nodes[1:], 1):
        a = v[nd['ins'][0]]
        k = nd['kind']
        if k == CONV or k == LIN:
            src = nodes[nd['ins'][0]]
            b = torch.from_numpy(biases[i].copy()) if i in biases else None
            if dyn:
                wq, sw = wts[i]
                s_x, zp = tflite_qparams(a.min(), a.max())
                q = torch.from_numpy(quantize(a, s_x, zp) - zp).double()  # exact ints in double
                w = torch.from_numpy(wq.copy()).double()
            else:
                q, w = a, torch.from_numpy(wts[i].copy())
            if k == CONV:
                w = w.reshape(nd['outc'], nd['kh'], nd['kw'], src['c'] // nd['g']).permute(0, 3, 1, 2)
                y = F.conv2d(q.permute(0, 3, 1, 2), w, None, (nd['sh'], nd['sw']), (nd['ph'], nd['pw']),
                             1, nd['g']).permute(0, 2, 3, 1)
            else:
                y = q.reshape(q.shape[0], -1) @ w.reshape(nd['outc'], -1).T
                y = y.reshape(q.shape[0], 1, 1, -1)
            if dyn:  # acc exact in double; then float32 as qualm does
                acc = y.round().float()
                m = (torch.tensor(np.float32(s_x)) * torch.from_numpy(sw.copy())).float()
                y = acc * m
            y = y.float()
            if b is not None:
                y = y + b
        elif k == RELU:
            y = torch.clamp(a, min=0)
        elif k == RELU6:
            y = torch.clamp(a, 0, 6)
        elif k == ADD:
            y = a + v[nd['ins'][1]]
        elif k == GAP:
            y = a.double().mean(dim=(1, 2), keepdim=True).float()
        elif k == MAXP:
            y = F.max_pool2d(a.permute(0, 3, 1, 2), (nd['kh'], nd['kw']), (nd['sh'], nd['sw']),
                             (nd['ph'], nd['pw'])).permute(0, 2, 3, 1)
        elif k == AVGP:
            y = F.avg_pool2d(a.permute(0, 3, 1, 2), (nd['kh'], nd['kw']), (nd['sh'], nd['sw']),
                             (nd['ph'], nd['pw']), count_include_pad=False).permute(0, 2, 3, 1)
        elif k in (DROP, FLAT):
            y = a.reshape(a.shape[0], nd['h'], nd['w'], nd['c'])
        elif k == SMAX:
            y = torch.softmax(a.double(), -1).float()
        elif k == LSMAX:
            y = torch.log_softmax(a.double(), -1).float()
        else:
            raise SystemExit(f'op {k} not simulated')
        v[i] = y if dyn else r16(y)
    return v[-1].reshape(x.shape[0], -1)


if __name__ == '__main__':
    path, fin, fout = sys.argv[1:4]
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 256
    secs = read(path)
    nodes = nodes_of(secs['MGRF'])
    h, w, c = nodes[0]['h'], nodes[0]['w'], nodes[0]['c']
    x = np.fromfile(fin, '<f4').reshape(-1, h, w, c)
    got = np.fromfile(fout, '<f4').reshape(x.shape[0], -1)
    ref = run(path, x, batch)
    diff = np.abs(ref - got)
    exact = np.mean(ref == got) * 100
    print(f'{path}: n {x.shape[0]}, batch {batch}, exact {exact:.2f}% of logits, '
          f'max |diff| {diff.max():.3g}, mean {diff.mean():.3g}, argmax agree '
          f'{np.mean(ref.argmax(1) == got.argmax(1)) * 100:.2f}%')
    want = float(sys.argv[5]) if len(sys.argv) > 5 else 99.0
    ok = exact >= want if want >= 0 else exact <= -want
    sys.exit(0 if ok else 1)
