"""kvstudy.resources: an eval job asks for a GPU only where it will run on one (profiles/local)."""

from kvstudy.resources import eval_gpus, has_gpu


def test_a_gpu_is_seen_through_its_device_files(tmp_path):
    assert not has_gpu(tmp_path, {})
    (tmp_path / "nvidiactl").touch()  # the control device alone is no GPU
    assert not has_gpu(tmp_path, {})
    (tmp_path / "nvidia0").touch()
    assert has_gpu(tmp_path, {})
    assert not has_gpu(tmp_path, {"CUDA_VISIBLE_DEVICES": ""}) and not has_gpu(tmp_path, {"CUDA_VISIBLE_DEVICES": "-1"})
    assert has_gpu(tmp_path, {"CUDA_VISIBLE_DEVICES": "0"})
    amd = tmp_path / "amd"
    amd.mkdir()
    (amd / "kfd").touch()
    assert has_gpu(amd, {})


def test_eval_jobs_take_a_gpu_only_where_they_run_on_one(tmp_path):
    gpu = tmp_path / "gpu"
    gpu.mkdir()
    (gpu / "nvidia0").touch()
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    assert eval_gpus("auto", gpu, {}) == 1 and eval_gpus("auto", cpu, {}) == 0
    assert eval_gpus("cuda", cpu, {}) == 1 and eval_gpus("cuda:1", cpu, {}) == 1
    assert eval_gpus("cpu", gpu, {}) == 0
