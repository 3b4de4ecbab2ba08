"""Commands that write check their output up front (issue 16): one line, exit 1, before the
data is read or the model loaded."""

import pytest
from click.testing import CliRunner

from edgevlm.cli.main import cli


@pytest.mark.parametrize("args", [
    ["train", "--data", "no-such-data", "--out", "{afile}/run"],
    ["train-concepts", "no-such-model", "--data", "no-such-data", "--out", "{afile}/model"],
    ["export", "no-such-model", "--out", "{afile}/engine"],
])
def test_an_unwritable_out_fails_first(tmp_path, args):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = CliRunner().invoke(cli, [a.format(afile=afile) for a in args])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [f"error: --out {afile}/{args[-1].split('/')[-1]}: {afile} is a file, not a "
                                          "folder; choose another path"]


def test_quantize_checks_its_out_before_the_engine_opens(tmp_path):
    from edgevlm.calibration.quantize import quantize_engine
    from edgevlm.errors import EdgeVLMError

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(EdgeVLMError, match=f"--out {afile}/int8: {afile} is a file, not a folder"):
        quantize_engine(str(tmp_path / "no-such-engine"), None, str(afile / "int8"))
