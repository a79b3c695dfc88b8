from merflow.tasks.labels import CLASS_SETS, LABEL_COLUMNS, megc2019_label, normalise_emotion, protocol_labels


def test_normalise_emotion_spellings():
    assert normalise_emotion(" Happiness ") == "happiness"
    assert normalise_emotion("Other") == "others"
    assert normalise_emotion("sur") == "surprise"
    assert normalise_emotion("happy") == "happiness"
    assert normalise_emotion("bliss") is None
    assert normalise_emotion(None) is None


def test_meta_mmfnet_class_sets():
    assert CLASS_SETS["casme2_4"].classes == ("disgust", "happiness", "repression", "surprise")
    assert CLASS_SETS["casme2_4"].label("casme2", "others") is None
    assert CLASS_SETS["casme2_5"].label("casme2", "others") == "others"
    assert CLASS_SETS["casme4"].label("casme", "tense") == "tense"
    assert CLASS_SETS["casme4"].label("casme2", "disgust") is None  # another dataset's sample


def test_cde3_follows_the_paper_mapping():
    cde = CLASS_SETS["cde3"]
    assert cde.label("casme", "tense") == "negative"
    assert cde.label("casme2", "repression") == "negative"
    assert cde.label("casme2", "happiness") == "positive"
    assert cde.label("smic_hs", "surprise") == "surprise"
    assert cde.label("casme2", "others") is None
    assert cde.label("samm", "anger") is None  # CDE is CASME + CASME II + SMIC only


def test_megc2019_mapping_and_exclusions():
    assert megc2019_label("casme2", "sub01", "EP02_01f", "repression") == "negative"
    assert megc2019_label("casme2", "sub09", "EP13_02", "fear") is None
    assert megc2019_label("casme2", "sub05", "EP09_05f", "disgust") is None
    assert megc2019_label("samm", "006", "006_1_2", "contempt") == "negative"
    assert megc2019_label("smic_hs", "s1", "s1_ne_01", "negative") == "negative"
    assert megc2019_label("smic_vis", "s1", "s1_ne_01", "negative") is None


def test_fused_sets_and_macro_rows():
    micro = protocol_labels("casme_sq", "s15", "happy1_1", "pain", is_macro=False)
    assert micro["label_fused4"] == "negative" and micro["label_fused9"] == "others"
    assert set(micro) == set(LABEL_COLUMNS)
    macro = protocol_labels("ckplus", "S005", "S005_001", "surprise", is_macro=True)
    assert macro["label_ckplus7"] == "surprise"
    assert [c for c, v in macro.items() if v is not None] == ["label_ckplus7"]
    assert protocol_labels("smic_hs", "s1", "x", "negative", False)["label_fused9"] is None
