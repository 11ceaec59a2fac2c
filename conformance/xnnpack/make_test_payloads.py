#!/usr/bin/env python3
"""Writes small hand-built XNNPACK payloads (XH00 + XN01 + constant region) used by
crates/pteron-xnnpack/tests/payloads.rs: one valid graph and variants that must be
rejected at init. Serialized with ExecuTorch's own XNNPACK serializer.

Run: conformance/.venv/bin/python conformance/xnnpack/make_test_payloads.py
"""
import struct
from pathlib import Path

from executorch.backends.xnnpack.serialization import xnnpack_graph_schema as S
from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import serialize_xnnpack_binary

OUT = Path(__file__).resolve().parents[2] / "crates" / "pteron-xnnpack" / "tests" / "data"
F32 = S.XNNDatatype.xnn_datatype_fp32


def tv(dt, dims, cidx=0, ext=0xFFFFFFFF, flags=0, id_out=0):
    return S.XNNTensorValue(datatype=dt, num_dims=len(dims), dims=dims, constant_buffer_idx=cidx, external_id=ext, flags=flags, id_out=id_out)


def graph(filter_value=None, fc_input=0, extra_nodes=(), const=None, consts=None):
    # y[2,3] = relu(x[2,4] @ W[3,4]^T + b[3])
    w = struct.pack("<12f", *[0.1 * (i - 6) for i in range(12)])
    b = struct.pack("<3f", 0.5, -0.25, 1.0)
    data = const if const is not None else w + b
    values = [
        S.XValue(tv(F32, [2, 4], ext=0, flags=1, id_out=0)),
        filter_value or S.XValue(tv(F32, [3, 4], cidx=1, id_out=1)),
        S.XValue(tv(F32, [3], cidx=2, id_out=2)),
        S.XValue(tv(F32, [2, 3], ext=1, flags=2, id_out=3)),
    ]
    nodes = [
        S.XNode(
            xnode_union=S.XNNFullyConnected(input1_id=fc_input, filter_id=1, bias_id=2, output_id=3, flags=0),
            debug_handle=0,
            output_min_max=S.OutputMinMax(output_min=0.0, output_max="+inf"),
        )
    ] + list(extra_nodes)
    g = S.XNNGraph(
        version="0",
        xnodes=nodes,
        xvalues=values,
        num_externs=2,
        input_ids=[0],
        output_ids=[3],
        constant_data=consts or [S.ConstantDataOffset(0, 0), S.ConstantDataOffset(0, 48), S.ConstantDataOffset(48, 12)],
    )
    return serialize_xnnpack_binary(g, bytearray(data))


def conv_node(kind, cin_per_group, cout_per_group, groups, k, stride, pad, inp, filt, bias, out, handle):
    return S.XNode(
        xnode_union=kind(
            padding_top=pad, padding_right=pad, padding_bottom=pad, padding_left=pad,
            kernel_height=k, kernel_width=k, subsampling_height=stride, subsampling_width=stride,
            dilation_height=1, dilation_width=1, group_input_channels=cin_per_group,
            group_output_channels=cout_per_group, groups=groups, adjustment_height=0, adjustment_width=0,
            input1_id=inp, filter_id=filt, bias_id=bias, output_id=out, flags=0,
        ),
        debug_handle=handle,
        output_min_max=S.OutputMinMax(output_min=0.0, output_max=6.0),
    )


def lcg(seed):
    """A fixed linear congruential generator: vals(n) gives n floats in [-1, 1)."""
    state = [seed]

    def vals(n):
        out = []
        for _ in range(n):
            state[0] = (state[0] * 1103515245 + 12345) % (1 << 31)
            out.append(state[0] / (1 << 30) - 1.0)
        return out

    return vals


def constant_region(blobs):
    """The packed f32 blobs and their constant_data entries (entry 0 empty)."""
    data = b"".join(struct.pack(f"<{len(b)}f", *b) for b in blobs)
    offs = [S.ConstantDataOffset(0, 0)]
    pos = 0
    for b in blobs:
        offs.append(S.ConstantDataOffset(pos, 4 * len(b)))
        pos += 4 * len(b)
    return data, offs


def one_input_graph(nodes, values, outs, offs, data):
    """Serializes a graph whose value 0 is the only input."""
    g = S.XNNGraph(
        version="0",
        xnodes=nodes,
        xvalues=values,
        num_externs=1 + len(outs),
        input_ids=[0],
        output_ids=outs,
        constant_data=offs,
    )
    return serialize_xnnpack_binary(g, bytearray(data))


def pw_dw_graph(variant):
    """x[1,7,9,5] -> 1x1 conv (5->12, ReLU6) -> mid -> depthwise 3x3 (pad 1, ReLU6) -> y.

    variant "plain": stride 2, y is the only output (the pair is fused);
    "shared": stride 1, the output is add(mid, y) (mid has a second reader);
    "output": stride 1, mid is an external output too. Weights: a fixed LCG."""
    h, w, cin, c = 7, 9, 5, 12
    vals = lcg(12345)
    blobs = [vals(c * cin), vals(c), vals(9 * c), vals(c)]
    proj = variant in ("proj", "proj_add")
    pc = cin if variant == "proj_add" else 6
    if proj:
        blobs += [vals(pc * c), vals(pc)]
    data, offs = constant_region(blobs)
    stride = 2 if variant in ("plain", "proj") else 1
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    mid_ext = dict(ext=2, flags=2) if variant == "output" else {}
    values = [
        S.XValue(tv(F32, [1, h, w, cin], ext=0, flags=1, id_out=0)),
        S.XValue(tv(F32, [c, 1, 1, cin], cidx=1, id_out=1)),
        S.XValue(tv(F32, [c], cidx=2, id_out=2)),
        S.XValue(tv(F32, [1, h, w, c], id_out=3, **mid_ext)),
        S.XValue(tv(F32, [1, 3, 3, c], cidx=3, id_out=4)),
        S.XValue(tv(F32, [c], cidx=4, id_out=5)),
        S.XValue(tv(F32, [1, oh, ow, c], **({} if variant in ("shared", "proj", "proj_add") else dict(ext=1, flags=2)), id_out=6)),
    ]
    nodes = [
        conv_node(S.XNNConv2d, cin, c, 1, 1, 1, 0, 0, 1, 2, 3, 0),
        conv_node(S.XNNDepthwiseConv2d, 1, 1, c, 3, stride, 1, 3, 4, 5, 6, 1),
    ]
    outs = [6]
    if proj:
        # y -> 1x1 projection (12 -> pc, clamp [-2, 2]) -> z; "proj_add": out = add(x, z)
        # clamped to [-1, 1.5].
        z_ext = {} if variant == "proj_add" else dict(ext=1, flags=2)
        values += [
            S.XValue(tv(F32, [pc, 1, 1, c], cidx=5, id_out=7)),
            S.XValue(tv(F32, [pc], cidx=6, id_out=8)),
            S.XValue(tv(F32, [1, oh, ow, pc], id_out=9, **z_ext)),
        ]
        pnode = conv_node(S.XNNConv2d, c, pc, 1, 1, 1, 0, 6, 7, 8, 9, 2)
        pnode.output_min_max = S.OutputMinMax(output_min=-2.0, output_max=2.0)
        nodes.append(pnode)
        outs = [9]
        if variant == "proj_add":
            values.append(S.XValue(tv(F32, [1, h, w, cin], ext=1, flags=2, id_out=10)))
            nodes.append(S.XNode(
                xnode_union=S.XNNAdd(input1_id=0, input2_id=9, output_id=10, flags=0),
                debug_handle=3,
                output_min_max=S.OutputMinMax(output_min=-1.0, output_max=1.5),
            ))
            outs = [10]
    if variant == "shared":
        values.append(S.XValue(tv(F32, [1, oh, ow, c], ext=1, flags=2, id_out=7)))
        nodes.append(
            S.XNode(xnode_union=S.XNNAdd(input1_id=3, input2_id=6, output_id=7, flags=0), debug_handle=2)
        )
        outs = [7]
    if variant == "output":
        outs = [6, 3]
    return one_input_graph(nodes, values, outs, offs, data)


def conv_add_graph(variant):
    """x[1,7,9,5] -> conv (5->5, ReLU6) -> mid; y = add(x, mid), clamped to [-1, 2.5].

    variant "plain": 1x1 conv, y the only output (the pair is fused); "k3": 3x3 conv
    (pad 1) and add(mid, x) (fused too); "shared": 1x1, the output is add(mid, y)
    (mid has a second reader); "output": 1x1, mid is an external output too.
    Weights: a fixed LCG."""
    h, w, c = 7, 9, 5
    k = 3 if variant == "k3" else 1
    vals = lcg(54321)
    blobs = [vals(c * k * k * c), vals(c)]
    data, offs = constant_region(blobs)
    mid_ext = dict(ext=2, flags=2) if variant == "output" else {}
    y_ext = {} if variant == "shared" else dict(ext=1, flags=2)
    values = [
        S.XValue(tv(F32, [1, h, w, c], ext=0, flags=1, id_out=0)),
        S.XValue(tv(F32, [c, k, k, c], cidx=1, id_out=1)),
        S.XValue(tv(F32, [c], cidx=2, id_out=2)),
        S.XValue(tv(F32, [1, h, w, c], id_out=3, **mid_ext)),
        S.XValue(tv(F32, [1, h, w, c], id_out=4, **y_ext)),
    ]
    a, b = (3, 0) if variant == "k3" else (0, 3)
    nodes = [
        conv_node(S.XNNConv2d, c, c, 1, k, 1, k // 2, 0, 1, 2, 3, 0),
        S.XNode(
            xnode_union=S.XNNAdd(input1_id=a, input2_id=b, output_id=4, flags=0),
            debug_handle=1,
            output_min_max=S.OutputMinMax(output_min=-1.0, output_max=2.5),
        ),
    ]
    outs = [4]
    if variant == "shared":
        values.append(S.XValue(tv(F32, [1, h, w, c], ext=1, flags=2, id_out=5)))
        nodes.append(S.XNode(xnode_union=S.XNNAdd(input1_id=3, input2_id=4, output_id=5, flags=0), debug_handle=2))
        outs = [5]
    if variant == "output":
        outs = [4, 3]
    return one_input_graph(nodes, values, outs, offs, data)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "fc_ok.bin").write_bytes(graph())
    (OUT / "fc_missing_value.bin").write_bytes(graph(fc_input=42))
    (OUT / "fc_const_out_of_range.bin").write_bytes(
        graph(consts=[S.ConstantDataOffset(0, 0), S.ConstantDataOffset(0, 48), S.ConstantDataOffset(48, 400)])
    )
    qv = S.XValue(
        S.XNNQuantizedTensorValue(
            tensor_value=tv(S.XNNDatatype.xnn_datatype_qcint8, [3, 4], cidx=1, id_out=1),
            quant_params=S.PerChannelQuant(scale=[0.1, 0.2], channel_dim=0, scale_buffer_idx=0, num_scales=2),
        )
    )
    (OUT / "fc_bad_quant.bin").write_bytes(graph(filter_value=qv))
    argmax = S.XNode(
        xnode_union=S.XNNArgMaxPooling2d(
            padding_top=0, padding_right=0, padding_bottom=0, padding_left=0, pooling_height=2, pooling_width=2,
            input_id=0, output_value_id=3, output_index_id=3, flags=0,
        ),
        debug_handle=1,
    )
    (OUT / "fc_unsupported.bin").write_bytes(graph(extra_nodes=[argmax]))
    for variant in ("plain", "shared", "output", "proj", "proj_add"):
        (OUT / f"pw_dw_{variant}.bin").write_bytes(pw_dw_graph(variant))
    for variant in ("plain", "k3", "shared", "output"):
        (OUT / f"conv_add_{variant}.bin").write_bytes(conv_add_graph(variant))
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
