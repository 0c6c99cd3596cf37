"""Every kernel builder helios uses, with representative parameters: what the SPIR-V tests
validate (`spirv-val`) and disassemble, and what `bench helios` can warm up."""

from __future__ import annotations

from alpha.helios.kernels import attention as katt
from alpha.helios.kernels import attn_probs as kap
from alpha.helios.kernels import coopmat as kcm
from alpha.helios.kernels import coopmat2 as kcm2
from alpha.helios.kernels import decode as kdec
from alpha.helios.kernels import elementwise as kel
from alpha.helios.kernels import flash as kfl
from alpha.helios.kernels import matmul as kmm
from alpha.helios.kernels import optim as kopt
from alpha.helios.kernels import rope as krope
from alpha.helios.kernels import rows as krows


def _map(name, shape, specs, scalars, body):
    return lambda: kel.map_kernel(name, shape, specs, scalars, body)


def coopmat_builders() -> dict:
    """The tensor-core kernels (SPIR-V 1.6, cooperative matrix, bfloat16: they need a newer
    spirv-val than the rest): every layout and load mode of the default tile for both input
    types and both sources, and every tile shape `bench helios` sweeps."""
    out = {}
    for dtype in ("bf16", "f16"):
        for src in (dtype, "f32"):
            for a_k in (True, False):
                for b_n in (True, False):
                    for vec in (True, False):
                        name = (f"coopmat_{dtype}_{src}_{'k' if a_k else 'm'}"
                                f"{'n' if b_n else 'k'}{'_vec' if vec else ''}")
                        out[name] = (lambda d=dtype, s=src, a=a_k, b=b_n, v=vec:
                                     kcm.coopmat_kernel(kcm.DEFAULT, d, s, a, b, v))
    # a linear's forward with its bias added at the store (both layouts of the weight), whole
    # tiles too
    for dtype in ("bf16", "f16"):
        for src in (dtype, "f32"):
            for b_n in (True, False):
                out[f"coopmat_{dtype}_{src}_k{'n' if b_n else 'k'}_vec_bias"] = (
                    lambda d=dtype, s=src, b=b_n: kcm.coopmat_kernel(kcm.DEFAULT, d, s, True, b,
                                                                     True, bias=True))
            out[f"coopmat_{dtype}_{src}_kk_vec_exact_bias"] = (
                lambda d=dtype, s=src: kcm.coopmat_kernel(kcm.DEFAULT, d, s, True, False, True,
                                                          None, True, bias=True))
    # the causal attention products, in the layouts ops_attention gives them
    for causal, a_k, b_n in (("skip_upper", True, False), ("k_to_m", True, True),
                             ("k_from_m", False, True)):
        out[f"coopmat_bf16_{causal}"] = (lambda c=causal, a=a_k, b=b_n:
                                         kcm.coopmat_kernel(kcm.DEFAULT, "bf16", "bf16", a, b,
                                                            True, c))
    for cfg in kcm.CONFIGS:
        for exact in (False, True):
            out[f"coopmat_bf16_{cfg.BM}x{cfg.BN}x{cfg.BK}_{cfg.WM}x{cfg.WN}_s{cfg.stages}"
                f"_g{cfg.group_m}{'_exact' if exact else ''}"] = (
                lambda cfg=cfg, e=exact: kcm.coopmat_kernel(cfg, "bf16", "bf16", True, False,
                                                            True, None, e))
    # the workgroup-scope kernel (VK_NV_cooperative_matrix2): every layout, aligned or not,
    # whole tiles, the bias epilogue, both input types, and the k loop's variants
    for dtype in ("bf16", "f16"):
        for a_k in (True, False):
            for b_n in (True, False):
                for aligned, exact in ((False, False), (True, False), (True, True)):
                    name = (f"coopmat2_{dtype}_{'k' if a_k else 'm'}{'n' if b_n else 'k'}"
                            f"{'_aligned' if aligned else ''}{'_exact' if exact else ''}")
                    out[name] = (lambda d=dtype, a=a_k, b=b_n, al=aligned, e=exact:
                                 kcm2.coopmat2_kernel(kcm2.DEFAULT, d, a, b, al, e))
        out[f"coopmat2_{dtype}_kk_aligned_bias"] = (
            lambda d=dtype: kcm2.coopmat2_kernel(kcm2.DEFAULT, d, True, False, True, False,
                                                 True))
    for exact in (False, True):
        out[f"coopmat2_bf16_u2{'_exact' if exact else ''}"] = (
            lambda e=exact: kcm2.coopmat2_kernel(kcm2.Cm2Config(unroll=2), "bf16", True, False,
                                                 True, e))
    # the emulated variants lavapipe runs (tests/test_helios_coopmat.py), every layout once
    for cfg, a_k, b_n in zip(EMULATED, (True, False, True), (True, True, False)):
        out[f"coopmat_emulated_{cfg.BM}x{cfg.BN}x{cfg.BK}_s{cfg.stages}"] = (
            lambda c=cfg, a=a_k, b=b_n: kcm.coopmat_kernel(c, "bf16", "bf16", a, b, True,
                                                           mode="emulated"))
    out["coopmat_emulated_bias"] = lambda: kcm.coopmat_kernel(EMULATED[0], "bf16", "f32", True,
                                                              False, True, mode="emulated",
                                                              bias=True)
    for b in FLASH:  # the fused attention (kernels/flash.py)
        out[f"{b.__name__}_coopmat"] = lambda b=b: b("coopmat")
    return out


# tiles that fit lavapipe's 32 KiB: both stagings, grouped order, 8 subgroups
EMULATED = (kcm.CoopConfig(64, 64, 64, 32, 32, stages=1, group_m=2),
            kcm.CoopConfig(64, 64, 32, 32, 32),
            kcm.CoopConfig(64, 128, 64, 32, 32, stages=1, group_m=3))
FLASH = (kfl.flash_forward, kfl.flash_backward_q, kfl.flash_backward_kv)


def builders() -> dict:
    f = "f32"
    flat = [(f, (1,), "out"), (f, (1,), "in")]
    strided = [(f, (12, 1), "out"), (f, (1, 5), "in"), (f, (0, 1), "in")]
    out = {
        "copy_flat": _map("copy", (7,), [("u32", (1,), "out"), ("u32", (1,), "in")], [],
                          lambda k, i, s: [i[1]]),
        "binary_broadcast": _map("binary_add", (3, 5), strided, [],
                                 lambda k, i, s: [kel.BINARY["max"](k, i[1], i[2])]),
        "cast_f32_i32": _map("cast", (9,), [("i32", (1,), "out"), (f, (1,), "in")], [],
                             lambda k, i, s: [i[1].to("i32")]),
        "cast_u32_f32": _map("cast", (9,), [(f, (1,), "out"), ("u32", (1,), "in")], [],
                             lambda k, i, s: [i[1].to("f32")]),
        "scalar_pow": _map("pow", (9,), flat, ["f32"],
                           lambda k, i, s: [kel.SCALAR["pow"](k, i[1], s[0])]),
        "gelu_backward": _map("gelu_backward", (9,), [(f, (1,), "inout"), (f, (1,), "in"),
                                                      (f, (1,), "in")], [],
                              lambda k, i, s: [i[0] + i[1] * kel.gelu_grad(k, i[2])]),
        "adamw": _map("adamw", (9,), [(f, (1,), "inout"), (f, (1,), "in"), (f, (1,), "inout"),
                                      (f, (1,), "inout")], ["f32"] * 8, kel.adamw_body),
        # the optimizers (kernels/optim.py)
        "lion_step": _map("lion_step", (9,), [(f, (1,), "inout"), (f, (1,), "in"),
                                              (f, (1,), "inout")], ["f32"] * 5, kopt.lion_body),
        "sgd_step_nesterov": _map("sgd_step", (9,), [(f, (1,), "inout"), (f, (1,), "in"),
                                                     (f, (1,), "inout")], ["f32"] * 4,
                                  kopt.sgd_body(True)),
        "muon_momentum": _map("muon_momentum", (9,), [(f, (1,), "out"), (f, (1,), "in"),
                                                      (f, (1,), "inout")], ["f32"] * 2,
                              kopt.muon_momentum_body(True)),
        "adafactor_u_factored": _map("adafactor_u", (3, 5), [(f, (5, 1), "out"), (f, (5, 1), "in"),
                                                             (f, (1, 0), "in"), (f, (0, 1), "in"),
                                                             (f, (0, 0), "in")], ["f32"] * 2,
                                     kopt.adafactor_u_body(True)),
        "adafactor_apply": _map("adafactor_apply", (9,), [(f, (1,), "inout"), (f, (1,), "in"),
                                                          (f, (0,), "in")], ["f32"] * 4,
                                kopt.adafactor_apply_body),
        "row_sum": lambda: krows.row_reduce("sum"),
        "row_max": lambda: krows.row_reduce("max"),
        "softmax_forward": lambda: krows.softmax_forward(False),
        "log_softmax_forward": lambda: krows.softmax_forward(True),
        "softmax_backward": lambda: krows.softmax_backward(False),
        "log_softmax_backward": lambda: krows.softmax_backward(True),
        "causal_softmax_probs_f32": lambda: kap.causal_softmax_probs("f32"),
        "causal_softmax_probs_bf16": lambda: kap.causal_softmax_probs("bf16"),
        "causal_probs_f16": lambda: kap.causal_probs("f16"),
        "causal_probs_f32": lambda: kap.causal_probs("f32"),
        "causal_softmax_grad_bf16": lambda: kap.causal_softmax_grad("bf16"),
        "causal_softmax_grad_f32": lambda: kap.causal_softmax_grad("f32"),
        "causal_softmax_grad_bf16_capped": lambda: kap.causal_softmax_grad("bf16", True),
        "pack_heads_bf16": lambda: kap.pack_heads("bf16"),
        "flash_rowdot": kfl.flash_rowdot,
        "flash_forward_emulated": lambda: kfl.flash_forward("emulated"),
        "flash_backward_q_emulated": lambda: kfl.flash_backward_q("emulated"),
        "flash_backward_kv_emulated": lambda: kfl.flash_backward_kv("emulated"),
        "layernorm_forward": lambda: krows.layernorm_forward(True),
        "layernorm_forward_nobias": lambda: krows.layernorm_forward(False),
        "layernorm_backward_dx": krows.layernorm_backward_dx,
        "rmsnorm_forward": krows.rmsnorm_forward,
        "rmsnorm_backward_dx": krows.rmsnorm_backward_dx,
        "rmsnorm_params_partial": krows.rmsnorm_params_partial,
        "softcap_backward": _map("softcap_backward", (9,), [(f, (1,), "inout"), (f, (1,), "in"),
                                                            (f, (1,), "in")], ["f32"],
                                 lambda k, i, s: [i[0] + i[1] * kel.softcap_grad(k, i[2], s[0])]),
        "crossentropy_forward": krows.crossentropy_forward,
        "crossentropy_backward": lambda: krows.crossentropy_backward(False, None),
        "crossentropy_backward_set_bf16": lambda: krows.crossentropy_backward(True, "bf16"),
        "crossentropy_backward_f16": lambda: krows.crossentropy_backward(False, "f16"),
        "layernorm_forward_bf16": lambda: krows.layernorm_forward(True, "bf16"),
        "layernorm_forward_nobias_f16": lambda: krows.layernorm_forward(False, "f16"),
        "add_layernorm_forward": lambda: krows.layernorm_forward(True, add=True),
        "add_layernorm_forward_nobias_bf16": lambda: krows.layernorm_forward(False, "bf16",
                                                                             add=True),
        "gelu_forward_bf16": lambda: kel.map_packed("gelu_forward", kel.gelu_forward, "bf16"),
        "embedding_forward": krows.embedding_forward,
        "embedding_rank": krows.embedding_rank,
        "embedding_backward_sorted": krows.embedding_backward_sorted,
        "colsum_partial": krows.colsum_partial,
        "colsum_finish": lambda: krows.colsum_finish(True),
        "layernorm_params_partial": lambda: krows.layernorm_params_partial(True),
        "partial_sumsq_f64": lambda: krows.partial_reduce("sumsq", "f64"),
        "partial_nonfinite": lambda: krows.partial_reduce("nonfinite", "f32"),
        "adamw_args": lambda: kopt.update_args("adamw"),
        "lion_args": lambda: kopt.update_args("lion"),
        "sgd_args": lambda: kopt.update_args("sgd"),
        "sgd_nesterov_args": lambda: kopt.update_args("sgd_nesterov"),
        "clip_finish_f64": lambda: kopt.clip_finish("f64"),
        "clip_finish_f32": lambda: kopt.clip_finish("f32"),
        "rng_uniform": krows.rng_uniform,
        "rng_uniform_based": lambda: krows.rng_uniform(True),
        "attention_forward": lambda: katt.attention_forward(128),
        "attention_backward_d": katt.attention_backward_d,
        "attention_backward_dq": lambda: katt.attention_backward_dq(128),
        "attention_backward_dkv": lambda: katt.attention_backward_dkv(128),
        "attention_forward_tiled": lambda: katt.attention_forward_tiled(8),
        "attention_backward_dq_tiled": lambda: katt.attention_backward_dq_tiled(8),
        "attention_backward_dk_tiled": lambda: katt.attention_backward_kv_tiled(8, "dk"),
        "attention_backward_dv_tiled": lambda: katt.attention_backward_kv_tiled(8, "dv"),
        "attention_forward_tiled64": lambda: katt.attention_forward_tiled(64),
        "attention_backward_dk_tiled64": lambda: katt.attention_backward_kv_tiled(64, "dk"),
        # the softcap variants (a compile-time cap: every builder takes it)
        "attention_forward_cap": lambda: katt.attention_forward(128, 2.5),
        "attention_backward_dq_cap": lambda: katt.attention_backward_dq(128, 2.5),
        "attention_backward_dkv_cap": lambda: katt.attention_backward_dkv(128, 2.5),
        "attention_forward_tiled_cap": lambda: katt.attention_forward_tiled(8, 30.0),
        "attention_backward_dq_tiled_cap": lambda: katt.attention_backward_dq_tiled(8, 30.0),
        "attention_backward_dk_tiled_cap": lambda: katt.attention_backward_kv_tiled(8, "dk",
                                                                                    30.0),
        "rope_forward": lambda: krope.rope(False),
        "rope_backward": lambda: krope.rope(True),
    }
    # the replayed decode step (kernels/decode.py): every prologue and epilogue
    for norm in kdec.NORMS:
        for epi in kdec.EPILOGUES:
            out[f"decode_gemv_{norm}_{epi}"] = (lambda n=norm, e=epi:
                                                kdec.decode_gemv(8, n, e, True))
    for norm in kdec.NORMS[1:]:
        out[f"decode_gemv_{norm}_staged"] = (lambda n=norm:
                                             kdec.decode_gemv(8, n, "gelu", True, 384))
    out["decode_gemv_swiglu_staged"] = lambda: kdec.decode_gemv(8, "layernorm", "swiglu", True,
                                                                384)
    out["decode_gemv_nobias_ks4"] = lambda: kdec.decode_gemv(4, "layernorm", None, False)
    out["decode_gemv_ks16"] = lambda: kdec.decode_gemv(16, None, "residual", True)
    out["decode_attention"] = lambda: kdec.decode_attention(256, 64)
    out["decode_attention_hs48"] = lambda: kdec.decode_attention(512, 48)
    out["decode_attention_cap"] = lambda: kdec.decode_attention(256, 32, 30.0)
    out["decode_attention_rope"] = lambda: kdec.decode_attention(256, 64, 0.0, True)
    out["decode_embed"] = lambda: kdec.decode_embed(False)
    out["decode_embed_pos"] = lambda: kdec.decode_embed(True)
    out["argmax_rows"] = kdec.argmax_rows
    out["matmul_default_ck_bf16"] = lambda: kmm.matmul_kernel(kmm.DEFAULT, True, False, "bf16")
    out["pack16_bf16"] = lambda: kcm.pack16_kernel("bf16")
    out["pack16_f16"] = lambda: kcm.pack16_kernel("f16")
    for name, cfg in (("small", kmm.SMALL), ("default", kmm.DEFAULT), ("large", kmm.LARGE)):
        out[f"matmul_{name}"] = (lambda cfg=cfg: kmm.matmul_kernel(cfg, False))
        out[f"matmul_{name}_ck"] = (lambda cfg=cfg: kmm.matmul_kernel(cfg, True))
        out[f"matmul_{name}_aligned"] = (lambda cfg=cfg: kmm.matmul_kernel(cfg, True, True))
    return out
