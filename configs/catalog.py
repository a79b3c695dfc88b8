"""Values of the sample catalog that adapters write and storage/catalog.py types: the apex sources, the
origins and the protocol label columns (derived from configs/labels.py's class sets when a catalog is read)."""

from __future__ import annotations

from merflow.configs.labels import BUILT_IN_CLASS_SETS, MEGC2019_COLUMN

# apex_source values: the sheet's apex is used | the sheet has none | the sheet's lies outside
# onset..offset (kept in apex_annotated). The last two leave apex null: the features flow spots it.
APEX_SOURCES = ("annotated", "missing", "outside_clip")
APEX_OUTSIDE_CLIP = "outside_clip"

# What a catalog row is (its ``origin`` column, catalog schema 3): a sample ingested from its frames, or one
# whose features were imported as someone else's pipeline made them (flows/imports.py): it has no frames.
ORIGINS = ("ingested", "imported")
INGESTED, IMPORTED = ORIGINS
# Sets of images that name no sample and no person (the survey's C4.mat and C9.mat: `merflow import-features`
# names their images by position) -> the class set that labels them. Their subject is UNKNOWN_SUBJECT, so
# only leave-one-video-out runs on them (training/folds.py refuses protocols that group by person).
SURVEY_SETS = {"survey_c4": "fused4", "survey_c9": "fused9"}
UNKNOWN_SUBJECT = "unknown"

# The label columns every catalog read has: one per built-in class set of configs/labels.py (in its order), then
# the MEGC2019 composite's. They are derived when a catalog is read (storage/catalog.py), never stored: a class
# set registered at run time adds its column too (``configs.labels.label_columns()`` lists them all).
LABEL_COLUMNS = tuple(f"label_{name}" for name in BUILT_IN_CLASS_SETS) + (MEGC2019_COLUMN,)
# Catalog schemas 2 and 3 stored these columns (storage/catalog.py reads them as stated labels).
STORED_LABEL_COLUMNS_V3 = ("label_casme4", "label_casme2_4", "label_casme2_5", "label_smic3", "label_samm5",
                           "label_ckplus7", "label_cde3", "label_fused4", "label_fused9", "label_megc2019")

# The catalog's local folders: raw/<sha256[:16]>/ (archives unpacked once), downloads/ (URL sources);
# storage/sources.py places them (in the local cache for a catalog on object storage).
RAW_DIR = "raw"
DOWNLOADS_DIR = "downloads"
