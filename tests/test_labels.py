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


def test_megc2019_membership_is_the_2014_list_whichever_sheet():
    # The 2019 CASME II sheet relabels three sub24 clips sadness -> surprise; the official list has
    # them as in 2014 (sadness: not in MEGC2019), so they stay out either way.
    for clip in ("EP07_01", "EP07_04f", "EP10_03"):
        assert megc2019_label("casme2", "sub24", clip, "surprise") is None
        assert megc2019_label("casme2", "sub24", clip, "sadness") is None
    assert megc2019_label("casme2", "sub24", "EP18_03", "surprise") == "surprise"


def test_fused9_is_the_nine_classes_of_apex9():
    fused9 = CLASS_SETS["fused9"]
    assert set(fused9.classes) == {"anger", "sadness", "surprise", "fear", "others", "happiness", "disgust",
                                   "repression", "tense"}
    assert fused9.label("casme", "tense") == "tense"          # CASME's tense is its own class
    for dataset, emotion in (("samm", "contempt"), ("casme", "contempt"), ("casme_sq", "pain"),
                             ("casme_sq", "helpless")):
        assert fused9.label(dataset, emotion) is None, (dataset, emotion)
    assert fused9.label("samm", "others") == "others" and fused9.label("casme_sq", "anger") == "anger"
    assert fused9.datasets == {"casme", "casme2", "casme_sq", "samm"}  # SMIC is commented out in apex9.m


def test_fused4_follows_apex4():
    fused4 = CLASS_SETS["fused4"]
    assert fused4.datasets == {"casme", "casme2", "casme_sq", "samm", "smic_hs"}
    expected = {  # apex4.m: happiness -> positive, others -> Other, surprise -> surprise, anything else negative
        "samm": {"happiness": "positive", "others": "others", "surprise": "surprise", "anger": "negative",
                 "contempt": "negative", "disgust": "negative", "fear": "negative", "sadness": "negative"},
        "casme2": {"happiness": "positive", "others": "others", "surprise": "surprise", "disgust": "negative",
                   "repression": "negative", "sadness": "negative", "fear": "negative"},
        "casme": {"happiness": "positive", "surprise": "surprise", "tense": "negative", "disgust": "negative",
                  "repression": "negative", "sadness": "negative", "contempt": "negative", "fear": "negative"},
        "casme_sq": {"happiness": "positive", "surprise": "surprise", "disgust": "negative", "anger": "negative",
                     "fear": "negative", "pain": "negative", "helpless": "negative", "sadness": "negative"},
        "smic_hs": {"negative": "negative", "positive": "positive", "surprise": "surprise"},
    }
    for dataset, mapping in expected.items():
        assert {e: fused4.label(dataset, e) for e in mapping} == mapping, dataset
    assert fused4.label("smic_vis", "negative") is None  # the survey's SMIC clips are HS


def test_fused_sets_and_macro_rows():
    micro = protocol_labels("casme_sq", "s15", "happy1_1", "pain", is_macro=False)
    assert micro["label_fused4"] == "negative" and micro["label_fused9"] is None
    assert set(micro) == set(LABEL_COLUMNS)
    macro = protocol_labels("ckplus", "S005", "S005_001", "surprise", is_macro=True)
    assert macro["label_ckplus7"] == "surprise"
    assert [c for c, v in macro.items() if v is not None] == ["label_ckplus7"]
    assert protocol_labels("smic_hs", "s1", "x", "negative", False)["label_fused9"] is None
