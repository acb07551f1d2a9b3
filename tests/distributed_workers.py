"""Workers for tests/test_distributed.py. Each runs in its own process, started by the test:

    python tests/distributed_workers.py {torch_ddp,torch_fsdp,jax_sharding,tf_mirrored} OUT.npz

and saves what the test compares to OUT.npz.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import numpy as np

LAM = 0.75


def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((16, 4)), rng.standard_normal((16, 1))


def torch_model() -> Any:
    import torch
    from torch import nn

    from gradrev.torch import GradientReversal

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 8), nn.Tanh(), GradientReversal(LAM), nn.Linear(8, 1)
    ).double()


def torch_grads(model: Any, x: Any, y: Any) -> dict[str, np.ndarray]:
    loss = ((model(x) - y) ** 2).mean()
    loss.backward()
    out = {}
    for name, p in model.named_parameters():
        g = p.grad
        g = g.full_tensor() if hasattr(g, "full_tensor") else g  # FSDP2 shards gradients
        out[name.replace("module.", "")] = g.detach().numpy()
    return out


def _torch_rank(rank: int, world: int, port: int, mode: str, out: str) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x, y = (torch.from_numpy(a) for a in batch())
    local = slice(rank * 8, (rank + 1) * 8)  # each rank gets half of the batch
    model = torch_model()
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model)
    else:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        fully_shard(model, mesh=init_device_mesh("cpu", (world,)))
    grads = torch_grads(model, x[local], y[local])
    if rank == 0:
        np.savez(out, **grads)
    dist.destroy_process_group()


def torch_distributed(mode: str, out: str) -> None:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_torch_rank, args=(2, port, mode, out), nprocs=2, join=True)


def jax_sharding(out: str) -> None:
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import gradrev

    jax.config.update("jax_enable_x64", True)
    assert jax.device_count() == 4, jax.devices()
    mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    by_row = NamedSharding(mesh, P("data"))
    x, y = batch()
    w = np.random.default_rng(1).standard_normal((4, 1))

    def loss(w: Any, x: Any, y: Any) -> Any:
        return jnp.mean((jnp.tanh(gradrev.reverse(x @ w, LAM)) - y) ** 2)

    single = jax.grad(loss)(w, x, y)  # committed to one device
    xs, ys = jax.device_put(x, by_row), jax.device_put(y, by_row)
    sharded = jax.jit(jax.grad(loss))(w, xs, ys)
    reversed_x = jax.jit(lambda x: gradrev.reverse(x, LAM))(xs)

    def local_loss(w: Any, x: Any, y: Any) -> Any:  # per-shard loss, then a mean over shards
        part = jnp.sum((jnp.tanh(gradrev.reverse(x @ w, LAM)) - y) ** 2)
        return jax.lax.psum(part, "data") / 16

    shard_mapped = jax.jit(
        jax.grad(
            jax.shard_map(
                local_loss, mesh=mesh, in_specs=(P(), P("data"), P("data")), out_specs=P()
            )
        )
    )(w, xs, ys)
    np.savez(
        out,
        single=np.asarray(single),
        sharded=np.asarray(sharded),
        shard_map=np.asarray(shard_mapped),
        sharding_kept=np.asarray(reversed_x.sharding.is_equivalent_to(xs.sharding, 2)),
        values_kept=np.asarray(np.array_equal(np.asarray(reversed_x), x)),
    )


def tf_mirrored(out: str) -> None:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras
    import tensorflow as tf

    from gradrev.keras import GradientReversal

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    x, y = batch()
    weights = {}
    for name, strategy in (
        ("single", tf.distribute.get_strategy()),
        ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])),
    ):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential(
                [
                    keras.Input((4,)),
                    keras.layers.Dense(8, activation="tanh"),
                    GradientReversal(LAM),
                    keras.layers.Dense(1),
                ]
            )
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(x.astype("float32"), y.astype("float32"), batch_size=16, epochs=5, verbose=0)
        weights[name] = [w.numpy() for w in model.trainable_weights]
        if name == "mirrored":
            assert strategy.num_replicas_in_sync == 2
    np.savez(out, **{f"{k}_{i}": w for k, ws in weights.items() for i, w in enumerate(ws)})


if __name__ == "__main__":
    what, path = sys.argv[1], sys.argv[2]
    if what == "torch_ddp":
        torch_distributed("ddp", path)
    elif what == "torch_fsdp":
        torch_distributed("fsdp", path)
    elif what == "jax_sharding":
        jax_sharding(path)
    elif what == "tf_mirrored":
        tf_mirrored(path)
    else:
        raise SystemExit(f"unknown worker {what!r}")
