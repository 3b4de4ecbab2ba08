from edgevlm.runtime.text import CaptionTokenizer
from edgevlm.tokenizer_training import train_tokenizer, vocab_report
from tests.support import CAPTIONS


def test_round_trip_normalises_case_and_punctuation(tmp_path):
    tok = train_tokenizer(CAPTIONS, min_frequency=1)
    ids = tok.encode("A black dog runs on the grass.")
    assert tok.unk_id not in ids
    assert tok.decode(ids) == "a black dog runs on the grass"
    path = str(tmp_path / "tokenizer.json")
    tok.tokenizer.save(path)
    assert CaptionTokenizer.load(path).encode("a black dog") == tok.encode("a black dog")


def test_special_token_ids_and_unknown_words():
    tok = train_tokenizer(CAPTIONS, min_frequency=1)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.encode("a zebra") == [tok.encode("a")[0], tok.unk_id]


def test_decode_stops_at_eos_and_drops_specials():
    tok = train_tokenizer(CAPTIONS, min_frequency=1)
    dog, runs = tok.encode("dog runs")
    assert tok.decode([tok.bos_id, dog, tok.eos_id, runs]) == "dog"


def test_min_frequency_shrinks_vocabulary():
    rows = vocab_report(CAPTIONS * 2, ["a purple dog"], min_frequencies=(1, 3))
    assert rows[0]["vocab_size"] > rows[1]["vocab_size"]
    assert rows[0]["dev_unk_word_rate"] == 1 / 3  # "purple" is unknown
