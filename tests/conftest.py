import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # One-frame steps are too small to share across threads; one thread keeps the suite fast and
    # steady on a 2-core machine that also runs other work.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
