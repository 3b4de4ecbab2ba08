"""Text from users (issue 16): questions cleaned before they are echoed, logged or spoken;
tokenizer.json files checked for size, format, special tokens and vocabulary size."""

import json

import pytest

from edgevlm.errors import EdgeVLMError
from edgevlm.runtime import text
from edgevlm.runtime.text import MAX_QUESTION_CHARS, CaptionTokenizer, clean_question
from edgevlm.tokenizer_training import train_tokenizer
from tests.support import CAPTIONS


@pytest.mark.parametrize("typed, clean", [
    ("is there a dog?", "is there a dog?"),
    ("is there a \x1b[1;31mdog\x1b[0m?", "is there a dog?"),  # colour (CSI)
    ("\x1b]0;window title\x07what is this?", "what is this?"),  # OSC, ended by BEL
    ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ here?", "link here?"),  # OSC ended by ST (a hyperlink)
    ("\u009b2Jcleared?", "cleared?"),  # the one-character CSI (C1)
    ("a\x00b\x07c\x08d\x7fe\x85f", "abcde f"),  # C0, DEL removed; NEL (a line break) is a space
    ("is\tthere\na\r\ndog?", "is there a dog?"),  # tab and line breaks: spaces, words kept apart
    ("  many   spaces  ", "many spaces"),
    ("\u202eevil\u202c text", "evil text"),  # bidirectional override: shows text out of order
    ("¿hay un perro? 日本", "¿hay un perro? 日本"),  # letters of any script are kept
])
def test_clean_question(typed, clean):
    assert clean_question(typed) == (clean, 0)


def test_clean_question_cuts_at_the_limit_and_says_how_much_was_dropped():
    assert clean_question("x" * 10_000) == ("x" * MAX_QUESTION_CHARS, 10_000 - MAX_QUESTION_CHARS)
    assert clean_question("abc def", max_chars=4) == ("abc", 3)


def _tokenizer_file(tmp_path, edit=None) -> str:
    path = tmp_path / "tokenizer.json"
    train_tokenizer(CAPTIONS, min_frequency=1).tokenizer.save(str(path))
    if edit:
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
    return str(path)


def test_a_good_tokenizer_loads(tmp_path):
    assert CaptionTokenizer.load(_tokenizer_file(tmp_path)).vocab_size > 4


def test_tokenizer_without_its_special_tokens_is_named(tmp_path):
    def swap(data):
        vocab = data["model"]["vocab"]
        vocab["[BOS]"], vocab["[EOS]"] = vocab["[EOS]"], vocab["[BOS]"]

    path = _tokenizer_file(tmp_path, swap)
    with pytest.raises(EdgeVLMError, match=rf"tokenizer {path}: tokenizer special tokens .* must have ids 0..3"):
        CaptionTokenizer.load(path)


def test_tokenizer_that_does_not_parse_is_one_line(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text('{"model": {"type": "NotAModel"}}')
    with pytest.raises(EdgeVLMError) as caught:
        CaptionTokenizer.load(str(path))
    assert str(caught.value).startswith(f"cannot read tokenizer {path}: ") and "\n" not in str(caught.value)


def test_tokenizer_too_big_or_too_small_is_refused(tmp_path, monkeypatch):
    path = _tokenizer_file(tmp_path)
    monkeypatch.setattr(text, "MAX_TOKENIZER_BYTES", 100)
    with pytest.raises(EdgeVLMError, match="over the 0 MB a caption vocabulary needs"):
        CaptionTokenizer.load(path)
    monkeypatch.undo()
    only_specials = _tokenizer_file(tmp_path, lambda data: data["model"].update(
        vocab={k: v for k, v in data["model"]["vocab"].items() if v < 4}))
    with pytest.raises(EdgeVLMError, match="has 4 tokens; a caption vocabulary has the 4 special tokens plus words"):
        CaptionTokenizer.load(only_specials)
