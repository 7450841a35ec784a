"""The real photographs that ``photos`` crops and ``sr-patches`` cuts: which, where they lie, whose, and which side.

All come with packages that ``make run`` and ``make test`` install (nothing is downloaded at run time); each was
looked at, and drawings, icons, paintings and toy-block pictures are left out by name, not by a content heuristic:

============================  =====  ==============  ============================================================
source                        count  long side (px)  licence (authors: the bundle's README, the package's copyright)
============================  =====  ==============  ============================================================
scikit-image (PyPI)               8  451-1411        CC0, public domain, Middlebury benchmark, CMMI
libjxl-testdata (Debian)          5  500-2268        BSD-3-Clause (JPEG XL test data), CC0 (wesaturate.com)
gcompris-qt-data: ``erase``      33  1885-1920       CC-BY-SA-4.0 (24), CC-BY-2.0/3.0 (4), CC0, public domain
gcompris-qt-data: ``explore_*``  82  1024            public domain, CC0, CC-BY-SA-4.0 (3), CC-BY-2.0 (3)
gcompris-qt-data: objects       137  320-400         public domain, CC0; ``windmill6`` GPL-2+
scratch (Debian)                 52  480             CC-BY-SA-3.0 (MIT Scratch 1.4 media)
lomiri-wallpapers-16.04          13  1365-5312       CC-BY-4.0, CC-BY-SA-4.0, CC0
============================  =====  ==============  ============================================================

GCompris' photos are WebP entries of its Qt resource bundles (:mod:`core.data.rcc`); the bundle's ``README`` next
to them names each photo's author, source and licence. Its ``details`` backgrounds are left out (paintings among
them, unknown sources), and three object photos that are the monument photos at a smaller size
(``brandenburgGate``, ``colosseum``, ``greatPyramid``). Licences per source are in each :class:`Photo`'s ``credit``.

The split is by photograph, so a photo is never on both sides: the first thirteen keep the sides they always
had (:data:`FIRST_CALIBRATION`, :data:`FIRST_EVALUATION`), every other one goes to calibration (``"train"``)
when a hash of its name (the first 8 bytes of its SHA-256), mod 100, is under 70 (:func:`side`), and each side is
ordered by that hash, so the first crops of a set mix sources. That gives 234 calibration and 96 evaluation
photos (71 % / 29 %), every source (and every GCompris bundle) on both sides.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

from core.external import (GCOMPRIS_RCC_DIR, LIBJXL_TESTDATA_DIR, LOMIRI_WALLPAPERS, LOMIRI_WALLPAPERS_DIR,
                           SCRATCH_BACKGROUNDS_DIR, debian_path, zoo_file)

SKIMAGE = "scikit-image"  # PyPI, a dependency in pyproject.toml; files relative to site-packages
LIBJXL = "libjxl-testdata"  # Debian; files relative to LIBJXL_TESTDATA_DIR
GCOMPRIS = "gcompris-qt-data"  # Debian; bundles relative to GCOMPRIS_RCC_DIR
SCRATCH = "scratch"  # Debian; files relative to SCRATCH_BACKGROUNDS_DIR
LOMIRI = "lomiri-wallpapers-16.04"  # Debian; files relative to LOMIRI_WALLPAPERS_DIR
DEBIAN_DIRS = {LIBJXL: LIBJXL_TESTDATA_DIR, GCOMPRIS: GCOMPRIS_RCC_DIR, SCRATCH: SCRATCH_BACKGROUNDS_DIR,
               LOMIRI: LOMIRI_WALLPAPERS_DIR}
CALIBRATION_PERCENT = 70


class Photo(NamedTuple):
    """One source photograph: which package holds it, where inside it, whose it is."""

    name: str  # unique in the pool
    package: str  # SKIMAGE, LIBJXL, GCOMPRIS, SCRATCH or LOMIRI
    path: str  # the file inside the package (for GCompris the bundle)
    credit: str  # author or source, and licence
    entry: str = ""  # GCompris: the WebP inside the bundle
    high_res: bool = False  # long side of 1000 px or more: ``sr-patches`` cuts it too

    def file(self) -> Path:
        """Where the photo (or its bundle) lies on this machine, or a RankscopeError naming what installs it."""
        if self.package == SKIMAGE:
            return zoo_file(self.package, self.path)
        return debian_path(DEBIAN_DIRS[self.package] / self.path)


FIRST_CALIBRATION = (
    Photo("chelsea", SKIMAGE, "skimage/data/chelsea.png", "Stefan van der Walt, CC0"),
    Photo("coffee", SKIMAGE, "skimage/data/coffee.png", "Rachel Michetti, CC0"),
    Photo("retina", SKIMAGE, "skimage/data/retina.jpg", "Mikael Häggström, CC0"),
    Photo("flower", LIBJXL, "jxl/flower/flower.png", "JPEG XL project test data, BSD-3-Clause"),
    Photo("hdr-room", LIBJXL, "jxl/hdr_room.png", "JPEG XL project test data, BSD-3-Clause"),
    Photo("blossom", LIBJXL, "external/wesaturate/500px/u76c0g_bliznaca_srgb8.png", "wesaturate.com, CC0"),
)
"""The six calibration photos of old (cat, cup, fundus, flowers, room, twigs); ``sr-patches`` cuts the PNGs."""

FIRST_EVALUATION = (
    Photo("astronaut", SKIMAGE, "skimage/data/astronaut.png", "NASA, public domain"),
    Photo("motorcycle", SKIMAGE, "skimage/data/motorcycle_left.png", "Middlebury 2014 stereo benchmark (via scikit-image)"),
    Photo("rocket", SKIMAGE, "skimage/data/rocket.jpg", "SpaceX, public domain"),
    Photo("immunohistochemistry", SKIMAGE, "skimage/data/ihc.png", "CMMI, no known copyright restrictions"),
    Photo("hubble-deep-field", SKIMAGE, "skimage/data/hubble_deep_field.jpg", "NASA, public domain"),
    Photo("coast", LIBJXL, "external/wesaturate/500px/cvo9xd_keong_macan_srgb8.png", "wesaturate.com, CC0"),
    Photo("tulips", LIBJXL, "external/wesaturate/500px/tmshre_riaphotographs_srgb8.png", "wesaturate.com, CC0"),
)
"""The seven evaluation photos of old (person, vehicle, night scene, tissue, sky, landscape, flowers); ``set5-like``
is its five PNGs."""

_COMMONS = "GCompris; photographers of Wikimedia Commons and others, each named in the bundle's README"

GCOMPRIS_PHOTOS: dict[str, tuple[str, str, str]] = {  # bundle -> (folder of the activity, photos, credit)
    "erase": ("erase/resource", """alpaca bee butterfly calf camels caterpillar chamaeleon cheetah crab dolphin
        flying_fox gibbon giraffe goat gorilla gosling heron horse kingfisher kitten long_nosed_monkey macaque meerkats
        northern_harrier nubian_ibex penguin pika red_panda rhinoceros spoonbills squirrel swans toucan""",
              f"{_COMMONS}: CC-BY-SA-4.0, CC-BY-2.0, CC-BY-3.0, CC0 or public domain"),
    "explore_monuments": ("explore_monuments/resource", """egypt/bentPyramid egypt/greatPyramidOfGiza
        egypt/meidumPyramid egypt/redPyramid france/arlesAmphitheater france/chateaudeChambord
        france/chateaudeChenonceau france/citedeCarcassonne france/eiffelTower france/montStMichel france/palaisdesPapes france/pontduGard
        france/reimsCathedral france/rocamadour germany/aulaPalatina germany/berlinCathedral germany/brandenburgGate
        germany/neuschwansteinCastle germany/schwerinPalace germany/trierImperialBaths germany/wormsCathedral
        india/ajantaCave india/charminar india/gatewayofIndia india/goldenTemple india/greatStupa india/hawaMahal
        india/konarkSunTemple india/mysorePalace india/qutubMinar india/rangGhar india/victoriaMemorial usa/cabrillo
        usa/canyondeChelly usa/castillodeSanMarcos usa/castleClinton usa/fortSumter usa/georgeWashingtonBirthplace
        usa/lincolnMemorial usa/mountRushmore usa/navajo usa/statueofLiberty wonders/chichenItza
        wonders/christTheRedeemer wonders/colosseum wonders/greatWallofChina wonders/machuPicchu wonders/petra
        wonders/tajMahal""", f"{_COMMONS}: public domain, CC0 or CC-BY-SA-4.0"),
    "explore_world_animals": ("explore_world_animals/resource/animals", """bison chameleon crocodile dragon giraffe
        hedgehog jaguar kangaroo koala lemur moose narwhal panda polar_bear scarlet_macaw""",
                              f"{_COMMONS}: public domain or CC0"),
    "explore_farm_animals": ("explore_farm_animals/resource/animals", "cat chicken cow dog duck horse owl pig sheep",
                             f"{_COMMONS}: public domain or CC0"),
    "explore_world_music": ("explore_world_music/resource/music", """africa america australia ireland italy japan mexico
        middleeast orchestra""", f"{_COMMONS}: public domain, CC0 or CC-BY-2.0"),
    "categorization": ("categorization/resource/images", " ".join(
        [f"fishes/fish{i}" for i in range(1, 29)]
        + [f"monuments/{name}" for name in """IndiaGate arcDeTriomphe bayterek burj cathedral christTheRedeemer
            eiffelTower empireState greatWall jucheTower kutubMinar leMusee leaningTowerOfPisa monument1 monument2
            monument3 mountRushmore operaHouse parthenon statueOfLiberty tajMahal usCapitol victoriaMemorial
            zimniPalace""".split()]
        + [f"others/{name}" for name in """baseball blackslate bucket buffetset bulb chair cup erasers igloo knife
            pan pencil pillow plate spoons volleyball weighingMachine""".split()]
        + [f"renewable/{name}" for name in """dam1 dam2 dam3 dam4 dam5 geothermal solar1 solar2 solar3 solar4 solar5
            solar6 solar7 solar8 windmill windmill1 windmill2 windmill3 windmill4 windmill5 windmill6 windmill7
            windmill8 windmill9 windmill11 windmill12 windmill13 windmill14 windmill15""".split()]
        + [f"tools/{name}" for name in """cuttingTool hammer1 hammer2 hammer3 hammer4 hammer5 hammer6 hammer7 hammer8
            hammer9 measuringTape1 measuringTape2 measuringTape3 measuringTape4 measuringTape5 measuringTape6
            multimeter1 multimeter2 multimeter3 nailCutter plier1 plier2 plier3 plier4 scissors1 scissors2 scissors3
            scissors4 screwDriver screwDriver1 screwDriver2 screwDriver3 sickle sideCutter1 spray tweezer tweezer1
            wrench wrench1""".split()]), f"{_COMMONS}: public domain or CC0 (windmill6: GPL-2+)"),
}
"""The photographs of GCompris' bundles; ``categorization``'s are small (320-400 px) photos of objects."""

SCRATCH_PHOTOS = {  # folder -> the .jpg photographs (its drawn backgrounds, and the GIFs, are left out)
    "Indoors": "chalkboard clothing-store hall kitchen the-movies-inside",
    "Nature": """beach-malibu canyon flower-bed forest garden-rock grand-canyon gravel-desert hill lake moon pathway
        tree water-and-rocks wave""",
    "Outdoors": """all-sports-mural atom-playground bench-with-view berkeley-mural boardwalk brick-wall-and-stairs
        brick-wall2 building-at-mit building-fireproof castle city-with-water city-with-water2 driveway hallway_outdoors
        hay_field houses mansion mural-faro parking-ramp pool route66 silos the-movies train-tracks1 train-tracks2
        village wooden-house""",
    "Sports": "baseball-field basketball-court1-a basketball-court1-b football-field playing-field tennis-backboard",
}
SCRATCH_CREDIT = "MIT Scratch 1.4 media (Debian scratch), CC-BY-SA-3.0"

LOMIRI_LICENCES = {  # photo of core.external.LOMIRI_WALLPAPERS -> licence; the author is in the name
    "Bridge_by_Sander_Klootwijk": "CC-BY-SA-4.0", "Dragonfly_by_Bolly": "CC-BY-SA-4.0",
    "Picture_0B_by_freespace": "CC-BY-4.0", "Picture_1A_by_freespace": "CC-BY-4.0", "Wine_by_Jakkub_Mede": "CC-BY-4.0",
    "aitzgorri_by_Aitzol_Berasategi": "CC-BY-4.0", "free_by_Peter_Nerlich": "CC-BY-SA-4.0",
    "friends_by_Aitzol_Berasategi": "CC-BY-4.0", "greentock_by_Peter_Nerlich": "CC-BY-SA-4.0",
    "life_by_Aitzol_Berasategi": "CC-BY-4.0", "picosdeeuropa_by_Aitzol_Berasategi": "CC-BY-4.0",
    "seeding_by_Clements_Engelhardt": "CC0-1.0", "sunset_by_Aitzol_Berasategi": "CC-BY-4.0",
}  # the package's two abstract images (analogpattern, umang) are not photographs and are left out


def _packaged() -> list[Photo]:
    """Every photo of :data:`GCOMPRIS_PHOTOS`, :data:`SCRATCH_PHOTOS` and ``LOMIRI_WALLPAPERS``."""
    photos = [Photo(f"{bundle}/{name}", GCOMPRIS, f"{bundle}.rcc", credit,
                    f"gcompris/src/activities/{folder}/{name}.webp", high_res=bundle != "categorization")
              for bundle, (folder, names, credit) in GCOMPRIS_PHOTOS.items() for name in names.split()]
    photos += [Photo(f"scratch/{folder}/{name}", SCRATCH, f"{folder}/{name}.jpg", SCRATCH_CREDIT)
               for folder, names in SCRATCH_PHOTOS.items() for name in names.split()]
    photos += [Photo(f"lomiri/{name}", LOMIRI, f"{name}.jpg",
                     f"{name.split('_by_')[1].replace('_', ' ')}, {LOMIRI_LICENCES[name]}", high_res=True)
               for name in LOMIRI_WALLPAPERS]
    return photos


def _hash(photo: Photo) -> int:
    return int.from_bytes(hashlib.sha256(photo.name.encode()).digest()[:8], "big")


def side(photo: Photo) -> str:
    """``"train"`` (calibration) or ``"test"`` (evaluation): for a photo not among the first thirteen, ``"train"``
    when the hash of its name, mod 100, is under :data:`CALIBRATION_PERCENT`."""
    if photo in FIRST_CALIBRATION or photo in FIRST_EVALUATION:
        return "train" if photo in FIRST_CALIBRATION else "test"
    return "train" if _hash(photo) % 100 < CALIBRATION_PERCENT else "test"


POOL = (*FIRST_CALIBRATION, *FIRST_EVALUATION, *_packaged())
"""Every photo, in the order of the tables above."""

SPLIT_PHOTOS = {split: tuple(sorted((p for p in POOL if side(p) == split), key=_hash)) for split in ("train", "test")}
"""Split -> its photos, ordered by the hash of their names."""
