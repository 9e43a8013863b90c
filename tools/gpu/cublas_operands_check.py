#!/usr/bin/env python3
"""Checks, without a GPU, the cuBLAS operand arguments of the training engine's GEMMs.

src/train/cuda/attention.cu and matmul.cu pass row-major tensors to column-major cuBLAS through
transpose flags, leading dimensions and batch strides. This script replays the same calls (their
arguments copied here, in the same order) through a column-major NumPy model of
cublasGemmStridedBatchedEx and compares the results with einsum references of causal GQA attention
(forward and backward) and of a projection (forward, dx, dW). Keep the calls here in step with the
.cu files. Usage: python3 tools/gpu/cublas_operands_check.py (needs numpy); exits 1 on a mismatch.
"""
import sys
import numpy as np
rng = np.random.default_rng(0)

def gemm(ta, tb, m, n, k, alpha, A, ao, lda, sa, B, bo, ldb, sb, beta, C, co, ldc, sc, count=1):
    for i in range(count):
        def mat(buf, off, ld, rows, cols):
            idx = off + np.arange(rows)[:, None] + np.arange(cols)[None, :] * ld
            return buf[idx], idx
        # op(A) is m x k: stored A is (m x k) if N else (k x m)
        a, _ = mat(A, ao + i * sa, lda, *( (m, k) if ta == 'N' else (k, m) ))
        if ta == 'T': a = a.T
        b, _ = mat(B, bo + i * sb, ldb, *( (k, n) if tb == 'N' else (n, k) ))
        if tb == 'T': b = b.T
        c, idx = mat(C, co + i * sc, ldc, m, n)
        C[idx] = alpha * (a @ b) + beta * c

# attention forward/backward as attention.cu, B, T, H, Hkv, Dh
B, T, H, Hkv, Dh = 2, 5, 6, 2, 4
G = H // Hkv; ldq = H * Dh; ldk = Hkv * Dh; TT = T * T; scale = 1 / np.sqrt(Dh)
q = rng.standard_normal(B * T * H * Dh); k = rng.standard_normal(B * T * Hkv * Dh); v = rng.standard_normal(B * T * Hkv * Dh)
dout = rng.standard_normal(B * T * H * Dh)
att = np.zeros(B * H * TT); out = np.zeros(B * T * H * Dh)
for b in range(B):
    qo = b * T * ldq; ko = b * T * ldk
    for r in range(G):
        so = (b * H + r) * TT
        gemm('T', 'N', T, T, Dh, scale, k, ko, ldk, Dh, q, qo + r * Dh, ldq, G * Dh, 0.0, att, so, T, G * TT, Hkv)
A = att.reshape(B, H, T, T)
mask = np.tril(np.ones((T, T), bool))
A = np.where(mask, A, -np.inf); A = np.exp(A - A.max(-1, keepdims=True)); A /= A.sum(-1, keepdims=True)
att = A.reshape(-1).copy()
for b in range(B):
    qo = b * T * ldq; ko = b * T * ldk
    for r in range(G):
        so = (b * H + r) * TT
        gemm('N', 'N', Dh, T, T, 1.0, v, ko, ldk, Dh, att, so, T, G * TT, 0.0, out, qo + r * Dh, ldq, G * Dh, Hkv)
# reference
Q = q.reshape(B, T, H, Dh); K = k.reshape(B, T, Hkv, Dh); V = v.reshape(B, T, Hkv, Dh)
Kr = np.repeat(K, G, axis=2); Vr = np.repeat(V, G, axis=2)
S = np.einsum('bthd,bshd->bhts', Q, Kr) * scale
S = np.where(mask, S, -np.inf); P = np.exp(S - S.max(-1, keepdims=True)); P /= P.sum(-1, keepdims=True)
O = np.einsum('bhts,bshd->bthd', P, Vr)
print("att", np.abs(att - P.reshape(-1)).max(), "out", np.abs(out - O.reshape(-1)).max())
# backward
datt = np.zeros_like(att); dq = np.zeros_like(q); dk = np.zeros_like(k); dv = np.zeros_like(v)
for b in range(B):
    qo = b * T * ldq; ko = b * T * ldk
    for r in range(G):
        ao = (b * H + r) * TT
        gemm('T', 'N', T, T, Dh, 1.0, v, ko, ldk, Dh, dout, qo + r * Dh, ldq, G * Dh, 0.0, datt, ao, T, G * TT, Hkv)
        gemm('N', 'T', Dh, T, T, 1.0, dout, qo + r * Dh, ldq, G * Dh, att, ao, T, G * TT, 1.0, dv, ko, ldk, Dh, Hkv)
D_ = datt.reshape(B, H, T, T); Pm = att.reshape(B, H, T, T)
dS = Pm * (D_ - (Pm * D_).sum(-1, keepdims=True)); datt = dS.reshape(-1).copy()
for b in range(B):
    qo = b * T * ldq; ko = b * T * ldk
    for r in range(G):
        ao = (b * H + r) * TT
        gemm('N', 'N', Dh, T, T, scale, k, ko, ldk, Dh, datt, ao, T, G * TT, 1.0, dq, qo + r * Dh, ldq, G * Dh, Hkv)
        gemm('N', 'T', Dh, T, T, scale, q, qo + r * Dh, ldq, G * Dh, datt, ao, T, G * TT, 1.0, dk, ko, ldk, Dh, Hkv)
dO = dout.reshape(B, T, H, Dh)
dP = np.einsum('bthd,bshd->bhts', dO, Vr)
dSr = P * (dP - (P * dP).sum(-1, keepdims=True))
dQ = np.einsum('bhts,bshd->bthd', dSr, Kr) * scale
dKr = np.einsum('bhts,bthd->bshd', dSr, Q) * scale
dVr = np.einsum('bhts,bthd->bshd', P, dO)
dK = dKr.reshape(B, T, Hkv, G, Dh).sum(3); dV = dVr.reshape(B, T, Hkv, G, Dh).sum(3)
print("dq", np.abs(dq - dQ.reshape(-1)).max(), "dk", np.abs(dk - dK.reshape(-1)).max(), "dv", np.abs(dv - dV.reshape(-1)).max())
# matmul as matmul.cu
R, N, Kd = 3, 4, 5
x = rng.standard_normal(R * Kd); w = rng.standard_normal(N * Kd); dy = rng.standard_normal(R * N)
y = np.zeros(R * N); dx = np.zeros(R * Kd); dw = np.zeros(N * Kd)
gemm('T', 'N', N, R, Kd, 1.0, w, 0, Kd, 0, x, 0, Kd, 0, 0.0, y, 0, N, 0)
gemm('N', 'N', Kd, R, N, 1.0, w, 0, Kd, 0, dy, 0, N, 0, 1.0, dx, 0, Kd, 0)
gemm('N', 'T', Kd, N, R, 1.0, x, 0, Kd, 0, dy, 0, N, 0, 1.0, dw, 0, Kd, 0)
X = x.reshape(R, Kd); W = w.reshape(N, Kd); DY = dy.reshape(R, N)
print("y", np.abs(y - (X @ W.T).reshape(-1)).max(), "dx", np.abs(dx - (DY @ W).reshape(-1)).max(), "dw", np.abs(dw - (DY.T @ X).reshape(-1)).max())
worst = max(np.abs(att - P.reshape(-1)).max(), np.abs(out - O.reshape(-1)).max(), np.abs(dq - dQ.reshape(-1)).max(),
            np.abs(dk - dK.reshape(-1)).max(), np.abs(dv - dV.reshape(-1)).max(), np.abs(dw - (DY.T @ X).reshape(-1)).max())
print(f"worst abs error {worst:.2e} (tolerance 1e-12)")
sys.exit(0 if worst < 1e-12 else 1)
