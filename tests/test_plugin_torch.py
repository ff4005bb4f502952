"""The torch.Tensor plugin: every dtype, zero-copy receive, requires_grad, device maps."""

import logging
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from wrapyfi_like.encoding import Codec  # noqa: E402
from wrapyfi_like.exceptions import ConfigurationError, DecodeError, EncodeError  # noqa: E402
from wrapyfi_like.plugins import torch_tensor  # noqa: E402
from wrapyfi_like.plugins.torch_devices import DeviceRouter, build_device_map, device_available, normalise_device  # noqa: E402
from wrapyfi_like.testing import PluginConformance, round_trip, wire_copy  # noqa: E402

HAS_CUDA = torch.cuda.is_available()


def _sample(dtype):
    if dtype == torch.bool:
        return torch.tensor([[True, False, True], [False, False, True]])
    if dtype.is_complex:
        return torch.tensor([[1 + 2j, -3.5j, 0], [4, 5 - 1j, 6]], dtype=dtype)
    if dtype.is_floating_point:
        return torch.arange(6, dtype=torch.float32).reshape(2, 3).sub(2.5).to(dtype)
    return torch.arange(6, dtype=torch.int64).reshape(2, 3).to(dtype)


def _raw_bytes(tensor):
    """The tensor's values as bytes, so NaNs and dtypes without comparison ops compare exactly."""
    return tensor.detach().resolve_conj().resolve_neg().contiguous().reshape(-1).view(torch.uint8)


class TestTorchConformance(PluginConformance):
    plugin = torch_tensor.TorchTensor

    def samples(self):
        cases = {name: _sample(dtype) for name, dtype in torch_tensor.DTYPES.items()
                 if name not in ("complex32",) and not name.startswith("float8")}
        cases.update({
            "0-d": torch.tensor(3.25, dtype=torch.float64),
            "4-d": torch.arange(120, dtype=torch.int16).reshape(2, 3, 4, 5),
            "requires_grad": torch.ones(2, 2, requires_grad=True),
            "parameter": torch.nn.Parameter(torch.full((3,), 0.5)),
            "conj_view": torch.tensor([1 + 1j, 2 - 3j]).conj(),
            "neg_view": torch.tensor([1.0, -2.0], dtype=torch.float32).neg(),
            "float8_e4m3fn": torch.tensor([0.5, -1.0, 2.0]).to(torch.float8_e4m3fn),
        })
        return cases

    def assert_equal(self, expected, actual):
        assert type(actual) is torch.Tensor
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        assert actual.requires_grad == expected.requires_grad
        assert actual.device == torch.device("cpu")
        assert torch.equal(_raw_bytes(actual), _raw_bytes(expected))

    def empty_sample(self):
        return torch.empty(0, 3, dtype=torch.float32)

    def non_contiguous_sample(self):
        return torch.arange(24, dtype=torch.float32).reshape(4, 6)[::2, 1::2].t()

    def read_only_sample(self):
        array = np.arange(10, dtype=np.float64)
        array.flags.writeable = False
        with pytest.warns(UserWarning, match="not writable"):
            return torch.from_numpy(array)

    def large_sample(self):
        return torch.rand(1024, 1024)  # 4 MiB


def test_bfloat16_keeps_exact_bits():
    tensor = torch.tensor([1.0, -2.5, 3.140625, 1e30, float("inf")]).to(torch.bfloat16)
    received = round_trip(Codec(), tensor)
    assert received.dtype == torch.bfloat16
    assert torch.equal(received.view(torch.int16), tensor.view(torch.int16))


@pytest.mark.parametrize("shape", [(8,), (2, 4), (2, 2, 2)])
def test_received_tensor_is_the_received_frame(shape):
    """One-dimensional tensors are built by torch.frombuffer, others shaped by numpy first
    (from_layout): both on the frame itself, the first message and the kept layout's next ones."""
    codec = Codec()
    for _ in range(2):
        frames = wire_copy(codec.encode(torch.arange(8, dtype=torch.int32).reshape(shape)))
        received = codec.decode(frames)
        frame = np.frombuffer(frames[1], dtype=np.uint8)
        assert received.shape == shape and received.data_ptr() == frame.ctypes.data
        frame[:4] = 255  # writing the frame changes the tensor: no copy was made
        assert received.reshape(-1)[0].item() == -1


@pytest.mark.parametrize("shape", [(4,), (2, 2)])
def test_tensor_from_read_only_frames_is_a_writable_copy(shape):
    codec = Codec()
    for _ in range(2):  # the second time from the kept layout
        sent = torch.arange(4, dtype=torch.int32).reshape(shape)
        frames = [bytes(frame) for frame in codec.encode(sent)]  # as read from a file
        received = codec.decode(frames)
        received.reshape(-1)[0] = 7  # torch has no read-only tensors: writing must not touch the frame
        assert received.reshape(-1).tolist() == [7, 1, 2, 3] and received.shape == shape
        assert np.frombuffer(frames[1], dtype=np.int32).tolist() == [0, 1, 2, 3]


def test_numpy_shapes_received_frames_with_the_dtype_numpy_gives_each_torch_dtype():
    """from_layout shapes a many-dimensional frame with numpy, in the dtype this table names:
    it must be the one torch's own numpy() gives, and name none where numpy() has none."""
    for dtype in torch_tensor.DTYPES.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # complex32: "support is experimental"
            empty = torch.empty(0, dtype=dtype)
        try:
            expected = empty.numpy().dtype
        except TypeError:
            expected = None
        assert torch_tensor._ARRAY_DTYPES.get(dtype) == expected, dtype


def test_publisher_sends_contiguous_cpu_tensor_without_copy():
    tensor = torch.arange(16, dtype=torch.float32)
    frames = Codec().encode(tensor)
    assert len(frames) == 2 and np.frombuffer(frames[1], dtype=np.uint8).ctypes.data == tensor.data_ptr()


def test_gradients_flow_on_received_tensor():
    received = round_trip(Codec(), torch.ones(3, requires_grad=True))
    received.sum().backward()
    assert torch.equal(received.grad, torch.ones(3))


@pytest.mark.parametrize("tensor, reason", [
    (torch.eye(3).to_sparse(), "with layout torch.sparse_coo"),
    (torch.empty(3, device="meta"), "'meta' device"),
])
def test_tensors_without_plain_data_are_refused_by_name(tensor, reason):
    with pytest.raises(EncodeError, match=reason):
        Codec().encode(tensor)


def test_decode_rejects_raw_that_is_not_a_byte_buffer():
    plugin = Codec().encoder_plugin(torch.Tensor)
    fields = list(plugin.encode(torch.arange(3, dtype=torch.int32))[1]["__wrapyfi__"])
    fields[1] = memoryview(bytearray(12)).cast("i")
    with pytest.raises(DecodeError, match="byte buffer"):
        plugin.decode("torch.Tensor", tuple(fields))


def test_decode_rejects_requires_grad_on_integer_tensor():
    codec = Codec()
    plugin = codec.encoder_plugin(torch.Tensor)
    ok, wrapped = plugin.encode(torch.arange(3))
    fields = list(wrapped["__wrapyfi__"])
    fields[5] = True
    with pytest.raises(DecodeError, match="requires_grad"):
        plugin.decode("torch.Tensor", tuple(fields))


@pytest.mark.parametrize("spelling", ["cuda:1", torch.device("cuda", 1), torch.device("cuda:1"), 1])
def test_device_spellings_are_one_key(spelling):
    assert normalise_device(spelling) == "cuda:1"


def test_device_without_index_means_index_zero_and_cpu_has_none():
    assert normalise_device("cuda") == "cuda:0"
    assert normalise_device(torch.device("cpu", 0)) == "cpu"


def test_load_device_alone_is_the_default():
    assert build_device_map("cpu", None) == {"default": "cpu"}


def test_map_is_normalised_and_callers_dict_untouched():
    given = {torch.device("cuda", 0): "cpu", "cuda:1": torch.device("cpu")}
    snapshot = dict(given)
    table = build_device_map("cpu", given)
    assert table == {"cuda:0": "cpu", "cuda:1": "cpu", "default": "cpu"}
    assert given == snapshot


def test_one_source_to_two_targets_is_an_error():
    with pytest.raises(ConfigurationError, match="cuda:1"):
        build_device_map(None, {"cuda:1": "cpu", torch.device("cuda", 1): "cuda:0"})


def test_load_device_conflicting_with_map_default_is_an_error():
    with pytest.raises(ConfigurationError, match="default"):
        build_device_map("cpu", {"default": "cuda:0"})


def test_conflict_raises_when_the_codec_is_built():
    with pytest.raises(ConfigurationError):
        Codec(map_torch_devices={"cuda:0": "cpu", 0: "cuda:0"})


@pytest.mark.skipif(HAS_CUDA, reason="checks a target this machine lacks")
def test_mapping_to_a_missing_device_is_an_error():
    with pytest.raises(ConfigurationError, match="does not have"):
        Codec(load_torch_device="cuda:0")


def _from_device(device, tensor, **kwargs):
    """Encode ``tensor`` as if it lived on ``device`` and decode it with a codec built from kwargs."""
    sender = Codec()
    plugin = sender.encoder_plugin(torch.Tensor)
    ok, wrapped = plugin.encode(tensor)
    fields = list(wrapped["__wrapyfi__"])
    fields[4] = device
    receiver = Codec(**kwargs)
    return receiver.decoder_plugin("torch.Tensor").decode("torch.Tensor", tuple(fields))[1]


def test_cuda_tensor_mapped_to_cpu():
    tensor = torch.arange(4.0)
    received = _from_device("cuda:0", tensor, map_torch_devices={"cuda:0": "cpu"})
    assert received.device.type == "cpu" and torch.equal(received, tensor)


def test_default_applies_to_unmapped_devices():
    received = _from_device("cuda:3", torch.ones(2), map_torch_devices={"cuda:0": "cpu", "default": "cpu"})
    assert received.device.type == "cpu"


@pytest.mark.skipif(HAS_CUDA, reason="needs a machine without CUDA")
def test_tensor_from_missing_device_falls_back_to_cpu_with_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="wrapyfi_like.plugins.torch"):
        received = _from_device("cuda:7", torch.ones(2))
    assert received.device.type == "cpu"
    assert "cuda:7" in caplog.text


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_cpu_tensor_mapped_to_cuda():
    received = _from_device("cpu", torch.ones(2), map_torch_devices={"cpu": "cuda:0"})
    assert received.device == torch.device("cuda", 0)


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_cuda_tensor_round_trip_keeps_device():
    tensor = torch.arange(5.0, device="cuda:0")
    received = round_trip(Codec(), tensor)
    assert received.device == tensor.device and torch.equal(received, tensor)


@pytest.mark.skipif(device_available("cuda:7"), reason="this process has a cuda:7")
def test_tensors_from_a_device_this_process_lacks_go_to_the_cpu_with_one_warning(caplog):
    router = DeviceRouter(build_device_map())
    with caplog.at_level(logging.WARNING, logger="wrapyfi_like.plugins.torch"):
        assert [router.target("cuda:7") for _ in range(3)] == ["cpu"] * 3
    assert len([record for record in caplog.records if "cuda:7" in record.getMessage()]) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a process without CUDA devices")
def test_unknown_source_devices_from_the_network_are_remembered_up_to_a_bound():
    router = DeviceRouter(build_device_map())
    for index in range(3 * DeviceRouter.REMEMBERED_SOURCES):
        assert router.target(f"cuda:{index}") == "cpu"
    assert len(router._fallbacks) == DeviceRouter.REMEMBERED_SOURCES


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a process without CUDA devices")
def test_a_listener_keeps_the_targets_of_at_most_a_bounded_number_of_wire_device_names():
    plugin = Codec().decoder_plugin("torch.Tensor")
    sent = torch.arange(3.0)
    fields = list(Codec().encoder_plugin(torch.Tensor).encode(sent)[1]["__wrapyfi__"])
    for index in range(2 * DeviceRouter.REMEMBERED_SOURCES):
        fields[4] = f"cuda:{index}"
        ok, received = plugin.decode("torch.Tensor", tuple(fields))
        assert received.device.type == "cpu" and torch.equal(received, sent)
    assert len(plugin._targets) == DeviceRouter.REMEMBERED_SOURCES


@pytest.mark.parametrize("device", ["gpu:0", "cuda:-1", "cuda:x"])
def test_a_bad_wire_device_name_is_refused_every_time_it_arrives(device):
    plugin = Codec().decoder_plugin("torch.Tensor")
    fields = list(Codec().encoder_plugin(torch.Tensor).encode(torch.ones(2))[1]["__wrapyfi__"])
    fields[4] = device
    for _ in range(2):
        with pytest.raises(DecodeError, match="bad torch device"):
            plugin.decode("torch.Tensor", tuple(fields))


def test_a_stream_of_tensors_that_differ_in_any_way_is_never_confused():
    """The codec keeps a stream's packed fields and checked layout (tests/test_plugin_layouts.py):
    tensors that differ in dtype, shape, layout of strides or grad must each arrive as sent,
    on both sides' kept layouts (second round) and on fresh frames each time."""
    values = [torch.arange(6, dtype=torch.float32), torch.arange(6, dtype=torch.int32),
              torch.arange(6, dtype=torch.float32).reshape(2, 3), torch.arange(6, dtype=torch.float32).reshape(3, 2),
              torch.arange(6, dtype=torch.float32).reshape(2, 3).t(), torch.arange(12, dtype=torch.float32)[::2],
              torch.ones(6, requires_grad=True), torch.arange(6.0).to(torch.bfloat16), torch.empty(0, 6)]
    codec = Codec()
    for _ in range(2):
        for value in values:
            for message in (value, [torch.zeros(3, dtype=torch.uint8), value], {"seq": 1, "data": value}):
                frames = wire_copy(codec.encode(message))
                decoded = codec.decode(frames)
                got = decoded if isinstance(message, torch.Tensor) else decoded[1] if isinstance(message, list) \
                    else decoded["data"]
                assert got.dtype == value.dtype and got.shape == value.shape
                assert got.requires_grad == value.requires_grad
                assert torch.equal(_raw_bytes(got), _raw_bytes(value))
                assert got.untyped_storage().data_ptr() == np.frombuffer(frames[-1], np.uint8).ctypes.data \
                    or not value.numel()  # built on this message's own frame, not a kept one


def test_a_kept_layout_keeps_each_messages_values_and_checks_its_frame():
    codec = Codec()
    header, _ = codec.encode(torch.zeros(4, dtype=torch.int32))
    for start in range(3):
        sent = torch.arange(start, start + 4, dtype=torch.int32)
        assert codec.encode(sent)[0] == header  # the kept fields: the same header as the first
        assert codec.decode(wire_copy(codec.encode(sent))).tolist() == sent.tolist()
    with pytest.raises(DecodeError, match="buffer size|needs 16 bytes"):  # the kept header, a short frame
        codec.decode([header, bytearray(12)])
    readonly = codec.decode([header, bytes(16)])  # a read-only frame: still a writable copy
    readonly[0] = 1
    assert readonly.tolist() == [1, 0, 0, 0]
