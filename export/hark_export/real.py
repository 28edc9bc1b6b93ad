"""The real-sound corpus: licence-clean recordings from Debian packages (and --extra folders),
mapped onto hark's categories by the reviewed table `sounds.toml`, split by source recording.

    hark-data real --out DIR [--extra FOLDER ...] [--debs CACHE] [--rates 16000]

1. `apt-get download` (no root needed) the packages of `PACKAGES` into the .deb cache and
   unpack them with `dpkg-deb -x`; some packages keep their sounds in containers, read here:
   0ad-data's public.zip and ufoai-sound's 0snd.pk3 (zip), openttd-opensfx's opensfx.cat
   (`cat_sounds`) and gcompris-qt-data's Qt resource archives (`rcc_files`).
2. Every audio file of a package, and every row of an --extra folder's `manifest.csv`, is
   matched against the rules of `sounds.toml` (first match wins): a category, caption phrases
   and the source recording it was cut from. Where a package's sounds have licences of their
   own (per file in its debian/copyright, or per sound in opensfx.cat), each clip carries its
   own licence and credit, and one whose licence is not clean (`licence_clean`: NonCommercial,
   NoDerivatives, Sampling Plus, unknown) is left out and counted. Unmatched and excluded
   clips are counted, and a file whose bytes equal an earlier one's is left out as a
   duplicate.
3. Each clip is decoded, mixed to mono, resampled by the daemon's own resampler
   (`hark_dsp.resample`), trimmed of leading and trailing silence, cut into pieces of at most
   `MAX_PIECE` seconds, and written as 16-bit WAV at every requested rate.
   bucklespring's single key clicks are joined into typing runs; espeak-ng (when installed)
   speaks a fixed list of sentences in several voices.
4. Source recordings, not clips, are split 70/10/20 into train/val/test within each category,
   so no recording (nor any piece of it) is in two splits and test numbers measure
   generalisation to recordings the model never heard.

Output: `clips.csv` (one row per clip: id, category, split, source, path inside the source,
recording, duration, licence, origin, phrases, file per rate), `summary.json` (per-source matched / excluded / unmatched counts,
per-category clips and recordings per split), `ATTRIBUTION.md` (every source and its licence),
`CREDITS.csv` (every recording that has a credit of its own: --extra folders' and the
per-sound credits of openttd-opensfx, ufoai-sound and gcompris-qt-data) and `licences/` (each
package's Debian copyright file, each extra folder's licence files).
"""

import csv
import fnmatch
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
import zipfile
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from hark_export.progress import progress

TABLE = Path(__file__).with_name("sounds.toml")
AUDIO = (".wav", ".ogg", ".flac", ".mp3")
MAX_PIECE = 10.0  # seconds: the longest clip written; longer recordings are cut
MAX_PIECES = 6  # pieces kept from one long recording, so ambiences do not swamp a category
MIN_CLIP = 0.15  # seconds of sound after trimming; shorter clips are left out
SPLIT_SHARES = (("train", 0.7), ("val", 0.1), ("test", 0.2))

# Package -> (licence of its sounds, as its debian/copyright states it; where the sounds are).
PACKAGES = {
    "0ad-data": ("CC-BY-SA-3.0", "usr/share/games/0ad/mods/public/public.zip"),
    "qabcs-data": ("GPL-3+", "usr/share/qabcs/abcs/all"),
    "scratch": ("CC-BY-SA-3.0 (Media/*)", "usr/share/scratch/Media/Sounds"),
    "scorched3d-data": ("GPL-2+; globalmods/apoc: CC-BY-SA-3.0",
                        "usr/share/games/scorched3d/data/globalmods"),
    "lugaru-data": ("CC-BY-SA-3.0 (Data/*)", "usr/share/games/lugaru/Sounds"),
    "widelands-data": ("GPL-2+", "usr/share/games/widelands/data"),
    "megaglest-data": ("CC-BY-SA-3.0", "usr/share/games/megaglest"),
    "bucklespring-data": ("GPL-2+", "usr/share/buckle/wav"),
    "flightgear-data-base": ("GPL-2+", "usr/share/games/flightgear"),
    "redeclipse-data": ("CC-BY-SA-3.0 / CC-BY-3.0 (data/sounds, per folder in debian/copyright)",
                        "usr/share/games/redeclipse/data/sounds"),
    "wesnoth-1.16-data": ("GPL-2+", "usr/share/games/wesnoth/1.16"),
    "lincity-ng-data": ("GPL-2+ or CC-BY-SA-2.0", "usr/share/games/lincity-ng/sounds"),
    # Per-sound licences and credits (CREDITS.csv): each sound's name in opensfx.cat, each
    # file's stanza in the debian/copyright of ufoai-sound and gcompris-qt-data.
    "openttd-opensfx": ("CC-BY-SA-3.0 as a whole; per sound CC-BY-3.0, CC-BY-SA-3.0 or CC0-1.0 "
                        "(its name in opensfx.cat)",
                        "usr/share/games/openttd/baseset/opensfx/opensfx.cat"),
    "ufoai-sound": ("CC-BY-SA-3.0, CC-BY-3.0, GPL-2, GPL-2+ or public-domain per file "
                    "(debian/copyright)", "usr/share/games/ufoai/base/0snd.pk3"),
    "gcompris-qt-data": ("GPL-3, GPL-3+, free-art, CC-BY-3.0, CC-BY-SA-4.0 or CC0-1.0 per file "
                         "(debian/copyright)", "usr/share/gcompris-qt/rcc"),
}

# espeak-ng speech: neutral sentences of the kind a microphone in a home hears.
SENTENCES = [
    "good morning, how did you sleep", "could you pass me the salt please",
    "i will be home at six tonight", "the weather is supposed to be nice tomorrow",
    "where did you put the car keys", "dinner is ready, come and eat",
    "let me call you back in five minutes", "have you seen my glasses anywhere",
    "we need to buy milk and bread", "the train leaves at half past nine",
    "turn the music down a little", "i think it is going to rain",
    "the meeting has been moved to thursday", "can you help me carry these bags",
    "what time does the shop close", "the children are playing in the garden",
    "please remember to water the plants", "i am going for a walk with the dog",
    "the package arrived this afternoon", "do you want a cup of tea",
    "the doctor said everything looks fine", "we should leave before the traffic gets bad",
    "my phone battery is almost empty", "thank you very much for your help",
    "this soup tastes really good", "the heating does not seem to work",
    "is anyone sitting here", "i forgot to lock the back door",
    "tell me about your day at school", "the bus was late again this morning",
    "shall we watch a film tonight", "the printer is out of paper",
    "it was lovely to see you again", "switch off the lights when you leave",
    "how much does this one cost", "i will send you the address later",
    "the cat is sleeping on the sofa", "we are almost out of coffee",
    "could you open the window a bit", "happy birthday, i hope you like it",
]
VOICES = ["en", "en-us", "en+f3", "en+m3", "en-us+f2", "en+m7", "en-gb-x-rp", "en+f4"]


@dataclass
class Rule:
    """One row of the table: clips of `source` whose path matches one of `paths`."""

    source: str
    paths: list[str]
    category: str
    say: list[str]
    group: str = "stem"

    def matches(self, source: str, path: str) -> bool:
        return source == self.source and any(
            fnmatch.fnmatchcase(path.lower(), p.lower()) for p in self.paths)


@dataclass
class Table:
    """The categories and rules of `sounds.toml`."""

    categories: dict[str, dict]
    rules: list[Rule]

    def synonyms(self) -> dict[str, set[str]]:
        """Per category, the words that name it in a caption."""
        return {c: set(v["synonyms"]) for c, v in self.categories.items()}

    def match(self, source: str, path: str) -> Rule | None:
        """The first rule matching the clip, or None."""
        return next((r for r in self.rules if r.matches(source, path)), None)


def load_table(path: Path = TABLE) -> Table:
    """Parse and check the table: every rule names a known category, every phrase has three
    parts, and each phrase's subject is named by its category's synonyms (so a caption built
    from it counts as naming the category)."""
    raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    categories = raw["category"]
    for name, c in categories.items():
        if c.get("kind") not in ("event", "background"):
            raise ValueError(f"{path}: category.{name}.kind must be event or background")
        for phrase in c["say"]:
            _check_phrase(path, name, phrase, c["synonyms"])
    rules = []
    for i, r in enumerate(raw["rule"]):
        cat = r["category"]
        if cat and cat not in categories:
            raise ValueError(f"{path}: rule {i + 1} names unknown category {cat!r}")
        say = r.get("say", categories[cat]["say"] if cat else [])
        for phrase in r.get("say", []):
            _check_phrase(path, cat, phrase, categories[cat]["synonyms"])
        paths = r["path"] if isinstance(r["path"], list) else [r["path"]]
        rules.append(Rule(r["source"], paths, cat, say, r.get("group", "stem")))
    return Table(categories, rules)


def _check_phrase(path, category: str, phrase: str, synonyms: list[str]) -> None:
    parts = phrase.split("|")
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise ValueError(f"{path}: {category}: phrase {phrase!r} is not subject|verb|gerund")
    words = set(" ".join(parts).lower().split())
    if not words & set(synonyms):
        raise ValueError(f"{path}: {category}: phrase {phrase!r} uses none of the category's "
                         "synonyms, so a caption made from it would not name the category")


def recording_of(path: str, how: str) -> str:
    """The source recording a clip was cut from (see the `group` key in sounds.toml)."""
    folder, _, name = path.rpartition("/")
    stem = name.rsplit(".", 1)[0]
    if how == "file":
        return path
    if how.startswith("re:"):
        m = re.search(how[3:], name)
        return f"{folder}/{m.group(1)}" if m else path
    # "stem": trailing digits, separators and a single take letter go (fs_grass3 -> fs_grass,
    # swordhit_11a -> swordhit).
    key = stem.lower()
    while True:
        shorter = re.sub(r"([\s_\-]*\d+[a-z]?|[\s_\-]+[a-z])$", "", key)
        if shorter == key or not shorter:
            return f"{folder}/{key}"
        key = shorter


# ---- audio ----

def decode(data: bytes | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the rate of an audio file (path or bytes)."""
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    x, sr = sf.read(src, dtype="float32", always_2d=True)
    return x.mean(axis=1), sr


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Through the daemon's own resampler, so training clips are what hark would hear."""
    import hark_dsp
    return hark_dsp.resample(np.ascontiguousarray(x, np.float32), rate_in, rate_out)


def trim(x: np.ndarray, sr: int, floor_db: float = -50.0) -> np.ndarray:
    """Without leading and trailing silence (20 ms blocks below `floor_db` relative to the
    clip's peak block), keeping 50 ms of margin."""
    block = max(1, sr // 50)
    n = len(x) // block
    if n == 0:
        return x
    rms = np.sqrt((x[: n * block].reshape(n, block) ** 2).mean(axis=1) + 1e-20)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > floor_db)
    if len(loud) == 0:
        return x[:0]
    lo = max(0, loud[0] * block - sr // 20)
    hi = min(len(x), (loud[-1] + 1) * block + sr // 20)
    return x[lo:hi]


def pieces(x: np.ndarray, sr: int) -> list[np.ndarray]:
    """A long recording cut into up to MAX_PIECES equal pieces of at most MAX_PIECE seconds."""
    limit = int(MAX_PIECE * sr)
    if len(x) <= limit:
        return [x]
    n = -(-len(x) // limit)
    size = len(x) // n
    out = [x[i * size:(i + 1) * size] for i in range(n)]
    if len(out) > MAX_PIECES:  # evenly spread over the recording
        out = [out[round(i * (len(out) - 1) / (MAX_PIECES - 1))] for i in range(MAX_PIECES)]
    return out


def write_wav(path: Path, x: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(x, -1.0, 1.0), sr, subtype="PCM_16")


# ---- sources ----

@dataclass
class Found:
    """One recording found in a source, before decoding."""

    source: str
    path: str  # inside the source
    read: object  # () -> bytes | Path
    licence: str
    origin: str = ""
    author: str = ""
    recording: str = ""  # the source recording, where the source itself names it


class CannotRead(RuntimeError):
    """A container entry this module cannot unpack (e.g. zstd in a Qt resource archive
    without the `zstandard` module); the clip is counted as undecodable."""


# ---- licences ----

_NOT_CLEAN = re.compile(r"\b(nc|noncommercial|non-commercial|nd|noderivs|noderivatives|"
                        r"sampling|all rights reserved|proprietary|unknown)\b")
_CLEAN = re.compile(r"cc0|cc-by|\bcc by\b|creative commons|\bgpl|\blgpl|public[- ]domain|"
                    r"free-art|free art|\bfal\b|\bmit\b|\bbsd\b|\bzlib\b|\bofl\b")


def licence_clean(licence: str) -> bool:
    """Whether clips under `licence` can train a model that is then given away: public domain,
    CC0, CC BY, CC BY-SA, Free Art, (L)GPL and other free licences are; NonCommercial,
    NoDerivatives, Sampling (Plus) and unnamed licences are not. "A and B" needs both to be
    clean, "A or B" one of them."""
    def one(lic: str) -> bool:
        lic = lic.strip().lower()
        return bool(_CLEAN.search(lic)) and not _NOT_CLEAN.search(lic)
    return bool(licence.strip()) and all(
        any(one(alt) for alt in part.split(" or ")) for part in re.split(r" and |;", licence))


@dataclass
class Stanza:
    """One `Files:` paragraph of a machine-readable debian/copyright."""

    files: list[str]
    licence: str
    holders: list[str]
    urls: list[str]

    def credit(self) -> str:
        """Its holders and links; a long list of holders (a package-wide stanza naming every
        programmer) is cut to the first three and a pointer to the file."""
        holders = self.holders if len(self.holders) <= 8 else self.holders[:3] + [
            f"and {len(self.holders) - 3} more in the package's debian/copyright"]
        return "; ".join(holders + self.urls)


def copyright_stanzas(text: str) -> list[Stanza]:
    """The `Files:` paragraphs of a DEP-5 debian/copyright, in order."""
    stanzas = []
    for para in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in para.splitlines():
            if line[:1] in (" ", "\t"):
                if key:
                    fields[key].append(line.strip())
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = [value.strip()]
        if "files" not in fields or "license" not in fields:
            continue
        holders = []
        for h in fields.get("copyright", []):
            if h and h not in holders:
                holders.append(h)
        urls = re.findall(r"https?://\S+", " ".join(fields.get("comment", [])))
        stanzas.append(Stanza(" ".join(fields["files"]).split(), fields["license"][0], holders,
                              urls))
    return stanzas


def copyright_of(stanzas: list[Stanza], path: str) -> Stanza | None:
    """The stanza that governs `path` (a path in the upstream tree): the last one whose
    `Files:` patterns match it (`*` and `?` match any character, `/` included)."""
    governing = None
    for st in stanzas:
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in st.files):
            governing = st
    return governing


def _tree_path(name: str, path: str) -> str:
    """Where a package's debian/copyright names a clip found inside one of its containers:
    0snd.pk3 is built from the tree's base/ (sound/x.ogg -> base/sound/x.ogg), and a .rcc's
    paths start with gcompris/ (x.rcc/gcompris/src/... -> src/...)."""
    if name == "ufoai-sound":
        return "base/" + path
    if name == "gcompris-qt-data":
        return path.split("/", 1)[1].removeprefix("gcompris/")
    return path


# ---- containers ----

@dataclass
class CatSound:
    """One sound of an OpenTTD sample catalogue."""

    index: int
    filename: str  # its source file, e.g. src/wav/osfx_40.wav
    name: str  # OpenSFX: '"Title". Original "x.wav" by "y". Edited by "z". License: ...'
    wav: bytes  # a whole RIFF WAVE file


def cat_sounds(data: bytes) -> list[CatSound]:
    """The sounds of an OpenTTD sample catalogue (`opensfx.cat`; the original game's
    `sample.cat` holds one raw PCM sound, "Corrupt sound", which this refuses).

    The file starts with a table of (offset, size) pairs, little-endian uint32 each; the first
    offset (the table's length, so 8 x the number of sounds) has bit 31 set in the newer
    format. At each offset: a length byte and that many bytes of name (NUL-terminated), then
    `size` bytes of RIFF WAVE; the newer format follows it with a filename (a NUL, a length
    byte, NUL-terminated bytes) before the next sound.
    """
    if len(data) < 8:
        raise ValueError("not a sample catalogue: shorter than one table entry")
    first = int.from_bytes(data[0:4], "little")
    new_format = bool(first & 0x80000000)
    count = (first & 0x7FFFFFFF) // 8
    if count == 0 or 8 * count > len(data):
        raise ValueError("not a sample catalogue: its table does not fit")
    table = [(int.from_bytes(data[8 * i:8 * i + 4], "little") & 0x7FFFFFFF,
              int.from_bytes(data[8 * i + 4:8 * i + 8], "little")) for i in range(count)]
    sounds = []
    for i, (offset, size) in enumerate(table):
        n = data[offset]
        name = data[offset + 1:offset + 1 + n].split(b"\0", 1)[0].decode("latin-1")
        start = offset + 1 + n
        wav = data[start:start + size]
        if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE" or len(wav) != size:
            raise ValueError(f"sample catalogue: sound {i} ({name[:40]!r}) is not RIFF WAVE")
        filename = f"sound_{i:02d}.wav"
        if new_format:
            end = table[i + 1][0] if i + 1 < count else len(data)
            tail = data[start + size:end].lstrip(b"\0")
            if tail:
                filename = tail[1:1 + tail[0]].split(b"\0", 1)[0].decode("latin-1") or filename
        sounds.append(CatSound(i, filename, name, wav))
    return sounds


def rcc_files(data: bytes) -> dict[str, object]:
    """The files of a Qt resource archive (`.rcc`, as `rcc -binary` writes it): path ->
    a function returning the file's bytes.

    Header (big-endian): "qres", version, then the offsets of the tree, the data and the
    names (version 3 adds a flags word). The tree is an array of nodes, 14 bytes (version 1)
    or 22 bytes (version 2 and 3, with a last-modified time): name offset (u32), flags (u16:
    1 zlib-compressed, 2 directory, 4 zstd-compressed), then for a directory the number of
    children and the index of the first (u32 each), for a file country and language (u16
    each) and the offset of its data (u32). Node 0 is the root directory. A name is a u16
    length, a u32 hash and UTF-16BE characters; a file's data is a u32 size and the bytes,
    which for zlib are a u32 uncompressed size and a zlib stream (qCompress) and for zstd a
    zstd frame (decoded when the `zstandard` module is installed, else CannotRead).
    """
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource archive (no 'qres' magic)")
    version, tree, payload, names = (int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big")
                                     for i in range(4))
    if version not in (1, 2, 3):
        raise ValueError(f"Qt resource archive version {version} is not known")
    node = 14 if version == 1 else 22

    def u16(at: int) -> int:
        return int.from_bytes(data[at:at + 2], "big")

    def u32(at: int) -> int:
        return int.from_bytes(data[at:at + 4], "big")

    def name(offset: int) -> str:
        at = names + offset
        return data[at + 6:at + 6 + 2 * u16(at)].decode("utf-16-be")

    def reader(flags: int, at: int):
        def read() -> bytes:
            size = u32(at)
            blob = data[at + 4:at + 4 + size]
            if flags & 1:
                return zlib.decompress(blob[4:])
            if flags & 4:
                try:
                    import zstandard
                except ImportError:
                    raise CannotRead("zstd-compressed Qt resource "
                                     "(pip install zstandard)") from None
                return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
            return blob
        return read

    files = {}
    todo = [(0, "")]
    while todo:
        index, prefix = todo.pop()
        at = tree + index * node
        flags = u16(at + 4)
        path = prefix + name(u32(at)) if index else ""
        if flags & 2:
            count, first = u32(at + 6), u32(at + 10)
            if first <= index or tree + (first + count) * node > len(data):
                raise ValueError(f"Qt resource archive: directory {path!r} points outside its tree")
            todo += [(child, path + "/" if path else "") for child in range(first, first + count)]
        else:
            files[path] = reader(flags, payload + u32(at + 10))
    return dict(sorted(files.items()))


# ---- packages ----

_LICENCE_NAMES = ((r"attribution[- ]sharealike (\d\.\d)", "CC-BY-SA-{}"),
                  (r"attribution (\d\.\d)", "CC-BY-{}"), (r"zero (\d\.\d)", "CC0-{}"),
                  (r"public domain", "public-domain"))


def opensfx_sound(name: str) -> tuple[str, str, str, list[str]]:
    """An OpenSFX sound's name in opensfx.cat, e.g. '"Sawmill". Original "Circular saw
    crosscutting.wav" by "Benboncan". Edited by "Wuzzy". License: Creative Commons
    Attribution 3.0 Unported.': its title, its credit (what lies between title and licence),
    its licence (CC-BY-3.0, CC-BY-SA-3.0, CC0-1.0, or the text as written) and the original
    recordings it was made from (the quoted names that do not follow "by" or "aka")."""
    m = re.match(r'\s*"([^"]*)"\.?\s*(.*)', name, re.S)
    title, rest = (m.group(1), m.group(2)) if m else ("", name)
    credit, _, written = rest.partition("License:")
    written = written.strip().rstrip(".")
    licence = next((form.format(*found.groups()) for pattern, form in _LICENCE_NAMES
                    if (found := re.search(pattern, written, re.I))), written)
    originals = [q.group(1) for q in re.finditer(r'"([^"]+)"', credit)
                 if not re.search(r"\b(by|aka)\s*$", credit[:q.start()], re.I)]
    return title, credit.strip(), licence, originals


def _readme_links(readme: Path) -> dict[str, str]:
    """OpenSFX's readme credits each original as '* name' over its URL: name -> URL."""
    if not readme.exists():
        return {}
    lines = gzip.open(readme, "rt", encoding="utf-8", errors="replace").read().splitlines()
    links = {}
    for line, below in zip(lines, lines[1:]):
        item = re.match(r'\s*\*\s+"?(.+?)"?\s*$', line)
        url = re.match(r"\s+(https?://\S+)\s*$", below)
        if item and url:
            links[item.group(1)] = url.group(1)
    return links


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _opensfx_clips(name: str, root: Path, where: str) -> list[Found]:
    """The sounds of opensfx.cat, each with its own licence and credit (its name) and the
    source recording it was edited from: sounds cut from one original, or mixed from
    overlapping originals, are one recording (e.g. "Wind" and "Heavy wind" from wind1.wav)."""
    sounds = cat_sounds((root / where).read_bytes())
    links = _readme_links(root / "usr/share/doc" / name / "readme.txt.gz")
    parsed = [opensfx_sound(s.name) for s in sounds]
    parent: dict[str, str] = {}

    def top(k: str) -> str:
        while parent.setdefault(k, k) != k:
            k = parent[k]
        return k
    for s, (_, _, _, originals) in zip(sounds, parsed):
        keys = [top(k) for k in originals or [Path(s.filename).stem]]
        for k in keys:
            parent[k] = min(keys)
    named: dict[str, str] = {}  # a group of originals is named after its first in the file
    found = []
    for s, (title, credit, licence, originals) in zip(sounds, parsed):
        stem = Path(s.filename).stem
        first = (originals or [stem])[0]
        recording = named.setdefault(top(first), "opensfx.cat/" + _slug(first))
        origin = " ".join([f'"{title}" (OpenSFX {stem}): {credit}']
                          + [links[o] for o in originals if o in links])
        found.append(Found(name, f"opensfx.cat/{stem}-{_slug(title)}.wav",
                           lambda w=s.wav: w, licence, origin, recording=recording))
    return found


def _with_copyright(name: str, root: Path, found: list[Found]) -> list[Found]:
    """Each clip's licence and credit from the package's debian/copyright (the stanza that
    governs the file it came from); "unknown" where none does."""
    text = (root / "usr/share/doc" / name / "copyright").read_text(encoding="utf-8")
    stanzas = copyright_stanzas(text)
    for f in found:
        st = copyright_of(stanzas, _tree_path(name, f.path))
        f.licence, f.origin = (st.licence, st.credit()) if st else ("unknown", "")
    return found


def fetch_packages(names: list[str], debs: Path, unpack: Path) -> dict[str, Path]:
    """Download (once) and unpack each package; returns package -> unpacked root."""
    debs.mkdir(parents=True, exist_ok=True)
    roots = {}
    for name in names:
        found = sorted(debs.glob(f"{name}_*.deb"))
        if not found:
            print(f"apt-get download {name}")
            result = subprocess.run(["apt-get", "download", name], cwd=debs,
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(
                    f"apt-get download {name} failed: {result.stderr.strip()}\n"
                    "hark-data real needs Debian/Ubuntu package lists that carry it "
                    "(run `apt-get update`), or pass --debs with the .deb files")
            found = sorted(debs.glob(f"{name}_*.deb"))
        root = unpack / name
        marker = root / ".unpacked"
        if (marker.read_text() if marker.exists() else "") != found[-1].name:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(root)], check=True)
            marker.write_text(found[-1].name)
        roots[name] = root
    return roots


def _zip_clips(name: str, archive: Path, licence: str, prefix: str = "") -> list[Found]:
    """The audio files of a zip archive under `prefix`, read when used."""
    z = zipfile.ZipFile(archive)
    members = [m for m in z.namelist() if m.startswith(prefix) and m.lower().endswith(AUDIO)]
    return [Found(name, m, lambda m=m: z.read(m), licence) for m in sorted(members)]


def package_clips(name: str, root: Path) -> list[Found]:
    """Every audio file of an unpacked package (0ad-data: the audio/ folder of public.zip;
    openttd-opensfx: the sounds of opensfx.cat; ufoai-sound: 0snd.pk3; gcompris-qt-data: its
    Qt resource archives)."""
    licence, where = PACKAGES[name]
    if name == "0ad-data":
        return _zip_clips(name, root / where, licence, "audio/")
    if name == "openttd-opensfx":
        return _opensfx_clips(name, root, where)
    if name == "ufoai-sound":  # 0snd.pk3 is a zip
        return _with_copyright(name, root, _zip_clips(name, root / where, licence))
    if name == "gcompris-qt-data":  # one Qt resource archive per activity
        found = []
        for rcc in sorted((root / where).glob("*.rcc")):
            found += [Found(name, f"{rcc.name}/{p}", read, licence)
                      for p, read in rcc_files(rcc.read_bytes()).items()
                      if p.lower().endswith(AUDIO)]
        return _with_copyright(name, root, found)
    base = root / where
    return [Found(name, str(p.relative_to(root)), lambda p=p: p, licence)
            for p in sorted(base.rglob("*")) if p.suffix.lower() in AUDIO]


def extra_clips(folder: Path) -> list[Found]:
    """The rows of an --extra folder's manifest.csv (path, description, licence, …)."""
    manifest = folder / "manifest.csv"
    if not manifest.exists():
        raise FileNotFoundError(f"--extra {folder}: no manifest.csv (columns path, description, "
                                "licence, and optionally source, author, origin)")
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for col in ("path", "licence"):
        if rows and col not in rows[0]:
            raise ValueError(f"{manifest}: no {col!r} column")
    return [Found(r.get("source") or folder.name, r["path"], lambda p=folder / r["path"]: p,
                  r["licence"], r.get("origin", ""), r.get("author", ""))
            for r in rows]


# ---- the corpus ----

@dataclass
class CorpusClip:
    """One written clip."""

    id: str
    category: str
    source: str
    path: str  # inside the source
    recording: str
    say: list[str]
    licence: str
    origin: str
    seconds: float
    split: str = ""
    files: dict = field(default_factory=dict)  # rate -> path relative to the corpus


def _clip_id(source: str, path: str, piece: int) -> str:
    flat = re.sub(r"[^A-Za-z0-9]+", "-", path.rsplit(".", 1)[0]).strip("-").lower()
    return f"{source}--{flat[-80:]}--{piece}"


def assign_splits(clips: list[CorpusClip], seed: int) -> None:
    """Recordings -> train/val/test within each category, aiming at 70/10/20 of its clips.

    Recordings are taken in a seeded hash order; one goes to test (then val) while that split
    is short of its share and would not end up with more than its share plus half of it, so a
    recording cut into many clips (a keyboard's typing runs, a pack of screams) stays in train
    unless it is all there is. A category of two or more recordings gets at least one test
    recording, of five or more at least one val recording.
    """
    by_cat: dict[str, Counter] = defaultdict(Counter)
    for c in clips:
        by_cat[c.category][c.recording] += 1
    split_of = {}
    for cat, recs in by_cat.items():
        order = sorted(recs, key=lambda r: hashlib.sha1(f"{seed}|{r}".encode()).hexdigest())
        total = sum(recs.values())
        filled = Counter()
        for r in order:
            split_of[r] = "train"
            for split, share in (("test", 0.2), ("val", 0.1)):
                if split == "val" and len(order) < 5:
                    continue
                if filled[split] < share * total and filled[split] + recs[r] <= 1.5 * share * total:
                    split_of[r] = split
                    filled[split] += recs[r]
                    break
        for split, least in (("test", 2), ("val", 5)):
            if len(order) >= least and not filled[split]:
                spare = [r for r in order if split_of[r] == "train"]
                if len(spare) > 1:
                    smallest = min(spare, key=lambda r: recs[r])
                    split_of[smallest] = split
                    filled[split] += recs[smallest]
    for c in clips:
        c.split = split_of[c.recording]


def _typing_runs(found: list[Found], rates: list[int], out: Path, licence: str,
                 seed: int) -> list[CorpusClip]:
    """bucklespring's key clicks (press and release of each key) joined into typing runs of
    2-6 s with human inter-key gaps: one source recording, the keyboard."""
    rng = np.random.default_rng(seed)
    keys = []
    for f in found:
        x, sr = decode(f.read())
        keys.append(resample(x, sr, 16000))
    clips = []
    for i in range(40):
        length = int(rng.uniform(2.0, 6.0) * 16000)
        run = np.zeros(length, np.float32)
        t = int(rng.uniform(0.05, 0.3) * 16000)
        while t < length:
            k = keys[rng.integers(len(keys))]
            n = min(len(k), length - t)
            run[t:t + n] += k[:n] * rng.uniform(0.5, 1.0)
            t += int(rng.gamma(4.0, 0.04) * 16000) + 800  # ~0.2 s apart, pauses now and then
            if rng.random() < 0.08:
                t += int(rng.uniform(0.3, 0.9) * 16000)
        clips.append(_write_clip(out, "bucklespring-data", f"typing-run-{i}", 0, run, 16000,
                                 rates, "typing", "bucklespring-data/keyboard", None,
                                 licence, ""))
    return clips


def _speech(rates: list[int], out: Path) -> list[CorpusClip]:
    """espeak-ng (GPL-3+) speaking SENTENCES, each in two voices at varied speed and pitch;
    one source recording per sentence."""
    if shutil.which("espeak-ng") is None:
        print("espeak-ng not found: no synthetic speech (apt-get install espeak-ng)")
        return []
    clips = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES):
            for j in range(2):
                voice = VOICES[(i + 3 * j) % len(VOICES)]
                wav = Path(tmp) / "s.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(140 + 15 * ((i + j) % 4)),
                                "-p", str(35 + 10 * ((i * 3 + j) % 4)), "-w", str(wav), text],
                               check=True, capture_output=True)
                x, sr = decode(wav)
                clips.append(_write_clip(out, "espeak-ng", f"sentence-{i}-{voice}", 0,
                                         resample(x, sr, 16000), 16000, rates, "speech",
                                         f"espeak-ng/sentence-{i}", None, "GPL-3+ (espeak-ng)",
                                         ""))
    return clips


def _write_clip(out: Path, source: str, path: str, piece: int, x: np.ndarray, sr: int,
                rates: list[int], category: str, recording: str, say, licence: str,
                origin: str) -> CorpusClip:
    cid = _clip_id(source, path, piece)
    clip = CorpusClip(cid, category, source, path, recording, list(say or []), licence, origin,
                      len(x) / sr)
    for rate in rates:
        y = x if rate == sr else resample(x, sr, rate)
        rel = Path("clips") / str(rate) / category / f"{cid}.wav"
        write_wav(out / rel, y, rate)
        clip.files[rate] = str(rel)
    return clip


def build(out: Path, extras: list[Path], debs: Path, rates: list[int], seed: int = 0,
          packages: list[str] | None = None, speech: bool = True) -> dict:
    """Build the corpus in `out` (see the module doc); returns the summary. `speech` adds
    espeak-ng's sentences."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = load_table()
    packages = list(PACKAGES) if packages is None else packages
    roots = fetch_packages(packages, Path(debs), Path(debs) / "unpacked")
    found: list[Found] = []
    for name in packages:
        found += package_clips(name, roots[name])
    extra_sources = {}
    for folder in extras:
        rows = extra_clips(Path(folder))
        extra_sources[Path(folder)] = sorted({f.source for f in rows})
        found += rows

    counts: dict[str, Counter] = defaultdict(Counter)
    clips: list[CorpusClip] = []
    keyboard: list[Found] = []
    seen: set[str] = set()
    rates = sorted(set(rates) | {16000})
    for f in progress(found, "clips", unit="clip"):
        if f.source in PACKAGES and not licence_clean(f.licence):
            counts[f.source]["not licence-clean"] += 1
            continue
        rule = table.match(f.source, f.path)
        if rule is None:
            counts[f.source]["unmatched"] += 1
            continue
        if not rule.category:
            counts[f.source]["excluded"] += 1
            continue
        try:
            data = f.read()
        except CannotRead as e:
            print(f"{f.source}:{f.path}: cannot read ({e}); left out")
            counts[f.source]["undecodable"] += 1
            continue
        data = data if isinstance(data, bytes) else Path(data).read_bytes()
        # Games copy one file into many folders (a wolf in 15 tilesets): a copy would be
        # a second "recording" that could land in another split.
        digest = hashlib.sha1(data).hexdigest()
        if digest in seen:
            counts[f.source]["duplicate"] += 1
            continue
        seen.add(digest)
        if f.source == "bucklespring-data":
            keyboard.append(f)
            counts[f.source]["matched"] += 1
            continue
        try:
            x, sr = decode(data)
        except (RuntimeError, sf.LibsndfileError) as e:
            print(f"{f.source}:{f.path}: cannot decode ({e}); left out")
            counts[f.source]["undecodable"] += 1
            continue
        x = trim(resample(x, sr, 16000), 16000)
        if len(x) < MIN_CLIP * 16000 or not np.isfinite(x).all():
            counts[f.source]["too short or silent"] += 1
            continue
        counts[f.source]["matched"] += 1
        recording = f"{f.source}/{f.recording or recording_of(f.path, rule.group)}"
        for k, piece in enumerate(pieces(x, 16000)):
            clips.append(_write_clip(out, f.source, f.path, k, piece, 16000, rates,
                                     rule.category, recording, rule.say, f.licence,
                                     f.origin))
    if keyboard:
        clips += _typing_runs(keyboard, rates, out, PACKAGES["bucklespring-data"][0], seed)
    if speech:
        spoken = _speech(rates, out)
        counts["espeak-ng"]["matched"] = len(spoken)
        clips += spoken
    assign_splits(clips, seed)

    with open(out / "clips.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "category", "split", "source", "path", "recording", "seconds",
                    "licence", "origin", "say"] + [f"path_{r}" for r in rates])
        for c in clips:
            w.writerow([c.id, c.category, c.split, c.source, c.path, c.recording,
                        f"{c.seconds:.3f}", c.licence, c.origin, ";".join(c.say)]
                       + [c.files[r] for r in rates])
    summary = _summary(clips, counts, table)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _attribution(out, clips, packages, roots, extra_sources)
    return summary


def _summary(clips: list[CorpusClip], counts: dict, table: Table) -> dict:
    per_cat = {}
    for cat in table.categories:
        mine = [c for c in clips if c.category == cat]
        per_cat[cat] = {s: {"clips": sum(c.split == s for c in mine),
                            "recordings": len({c.recording for c in mine if c.split == s})}
                        for s, _ in SPLIT_SHARES}
        per_cat[cat]["sources"] = sorted({c.source for c in mine})
    return {"clips": len(clips), "recordings": len({c.recording for c in clips}),
            "hours": sum(c.seconds for c in clips) / 3600,
            "sources": {s: dict(c) for s, c in sorted(counts.items())},
            "categories": per_cat,
            "empty_categories": [c for c, v in per_cat.items()
                                 if not any(v[s]["clips"] for s, _ in SPLIT_SHARES)]}


def _attribution(out: Path, clips: list[CorpusClip], packages: list[str],
                 roots: dict[str, Path], extras: dict[Path, list[str]]) -> None:
    """ATTRIBUTION.md: every source with its licence and clip count; licences/ keeps the
    packages' copyright files and the extra folders' licence files."""
    lic = out / "licences"
    lic.mkdir(exist_ok=True)
    used = Counter(c.source for c in clips)
    lines = ["# Attribution", "",
             "Recordings in this corpus, by source. Debian packages were fetched with "
             "`apt-get download`; their copyright files are in `licences/`.", "",
             "| source | clips | licence | where |", "|---|---:|---|---|"]
    for name in packages:
        copyright_file = next((roots[name] / "usr/share/doc").glob("*/copyright"), None)
        if copyright_file:
            shutil.copy(copyright_file, lic / f"{name}.copyright")
        licence = PACKAGES[name][0]
        if any(c.origin for c in clips if c.source == name):  # per-sound licences and credits
            per_clip = Counter(c.licence for c in clips if c.source == name)
            licence += ("; clips: " + ", ".join(f"{k} ({v})" for k, v in per_clip.most_common())
                        + "; per recording in CREDITS.csv")
        lines.append(f"| Debian package `{name}` | {used[name]} | {licence} | "
                     f"`{PACKAGES[name][1]}` |")
    if used["espeak-ng"]:
        lines.append(f"| espeak-ng (synthetic speech) | {used['espeak-ng']} | GPL-3+ | "
                     "generated by `hark-data real` |")
    for folder, sources in extras.items():
        for name in ("README.md", "LICENSE.txt", "LICENSE", "authors.txt"):
            for p in [folder / name, *folder.glob(f"*/{name}")]:
                if p.exists():
                    dst = lic / f"{folder.name}--{p.relative_to(folder).as_posix().replace('/', '--')}"
                    shutil.copy(p, dst)
        for s in sources:
            licences = Counter(c.licence for c in clips if c.source == s)
            desc = ", ".join(f"{k} ({v})" for k, v in licences.most_common())
            lines.append(f"| `{s}` (an `--extra` folder) | {used[s]} | {desc} | "
                         "per recording in CREDITS.csv (`licence`, `origin`) |")
    (out / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    extra_sources = {s for sources in extras.values() for s in sources}
    write_credits(out / "CREDITS.csv", [c for c in clips if c.source in extra_sources
                                        or (c.source in PACKAGES and c.origin)])


def write_credits(path: Path, clips: list) -> None:
    """CREDITS.csv: each recording of `clips` (anything with source, recording, licence and
    origin) once, with its licence and where it came from: the per-work attribution CC-BY
    asks for, small enough to travel with every model trained on them. A recording whose clips
    differ in licence or origin (sounds edited from one original, each credited in full) lists
    each once, joined by " | "."""
    credits: dict[tuple, tuple[list, list]] = {}
    for c in clips:
        licences, origins = credits.setdefault((c.source, c.recording), ([], []))
        for have, value in ((licences, c.licence), (origins, c.origin)):
            if value not in have:
                have.append(value)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["source", "recording", "licence", "origin"])
        w.writerows(sorted((source, recording, " | ".join(licences), " | ".join(origins))
                           for (source, recording), (licences, origins) in credits.items()))


def load_corpus(root: Path) -> list[dict]:
    """The rows of a corpus's clips.csv, with `say` split into phrases."""
    with open(Path(root) / "clips.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["say"] = [p for p in r["say"].split(";") if p]
        r["seconds"] = float(r["seconds"])
    return rows


def default_debs() -> Path:
    """Where downloaded .debs are kept between runs: $HARK_CACHE/debs."""
    return Path(os.environ.get("HARK_CACHE", Path.home() / ".cache/hark")) / "debs"
