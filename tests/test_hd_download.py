"""The official Heidelberg Digits download through TFDS's download manager, served from loopback.

A local HTTP server stands in for the Zenke lab: it serves a small archive in HD's layout (tones
written as FLAC, so no speech synthesiser is needed) and its ``md5sums.txt``. Covers the fallback to
the next address, the checks (the published md5 on the first download, TFDS's recorded size and
sha256 after), the reuse of a finished download, TFDS's ``manual_dir``, and a truncated archive.
"""
import functools
import hashlib
import http.server
import pathlib
import shutil
import tempfile
import threading

import numpy as np
import soundfile as sf
import tensorflow_datasets as tfds
from absl.testing import absltest

from data import hd_loader, synth_corpus
from data import heidelberg_digits as hd

TRAIN_SPEAKERS, TEST_SPEAKERS, DIGITS = (0, 1), (2,), (0, 1, 2)


@functools.lru_cache(maxsize=None)
def tone_archive() -> pathlib.Path:
  """``hd_audio.tar.gz`` and ``md5sums.txt`` of 9 short tones in HD's layout (3 speakers x 3 digits;
  speaker 2 only in the test list), in a folder of their own."""
  root = pathlib.Path(tempfile.mkdtemp(prefix="hd_tones_"))
  layout = root / "layout"
  (layout / "audio").mkdir(parents=True)
  lists = {"train": [], "test": []}
  t = np.arange(4800) / 16000
  for speaker in TRAIN_SPEAKERS + TEST_SPEAKERS:
    for digit in DIGITS:
      name = synth_corpus.hd_filename("english", speaker, 0, digit)
      tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * digit + 20 * speaker) * t) * np.hanning(len(t))
      sf.write(layout / "audio" / name, tone, 16000, format="FLAC", subtype="PCM_16")
      lists["test" if speaker in TEST_SPEAKERS else "train"].append(name)
  for split, names in lists.items():
    (layout / f"{split}_filenames.txt").write_text("".join(n + "\n" for n in names))
  (root / "served").mkdir()
  synth_corpus.pack_archive(layout, root / "served" / hd.ARCHIVE_NAME)
  return root / "served"


def files(directory: pathlib.Path) -> list[str]:
  return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


class _Handler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass

  def do_GET(self):
    self.server.requests.append(self.path)
    super().do_GET()


class _Server:
  """Serves a directory on 127.0.0.1 in a thread and lists the paths requested."""

  def __init__(self, directory):
    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(directory)))
    self.httpd.requests = []
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
    threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

  @property
  def requests(self) -> list[str]:
    return self.httpd.requests

  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()


class DownloadTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    tfds.disable_progress_bar()
    self.served = self.tmp()
    for name in (hd.ARCHIVE_NAME, "md5sums.txt"):
      shutil.copy(tone_archive() / name, self.served)
    self.server = _Server(self.served)
    self.addCleanup(self.server.close)
    self.archive_url = f"{self.server.url}/{hd.ARCHIVE_NAME}"

  def tmp(self) -> pathlib.Path:
    d = tempfile.TemporaryDirectory()
    self.addCleanup(d.cleanup)
    return pathlib.Path(d.name)

  def test_download_falls_back_verifies_records_and_is_reused(self):
    downloads = self.tmp()
    missing = f"{self.server.url}/gone/{hd.ARCHIVE_NAME}"  # 404: the next address is tried
    archive = hd.fetch_official(downloads, [missing, self.archive_url])
    served = (self.served / hd.ARCHIVE_NAME).read_bytes()
    self.assertEqual(archive.read_bytes(), served)
    recorded = tfds.download.checksums.load_url_infos(downloads / hd.RECORDED_CHECKSUMS)
    self.assertEqual(list(recorded), [self.archive_url])  # only the address that gave the archive
    self.assertEqual(recorded[self.archive_url].size, len(served))
    self.assertEqual(recorded[self.archive_url], tfds.download.checksums.compute_url_info(archive))
    # A later run takes the finished download from TFDS's cache (filed under its checksum now): no request.
    before = len(self.server.requests)
    self.assertEqual(hd.fetch_official(downloads, [self.archive_url]).read_bytes(), served)
    self.assertEqual(self.server.requests[before:], [])

  def test_a_later_download_is_checked_against_the_recorded_checksum(self):
    first = self.tmp()
    hd.fetch_official(first, [self.archive_url])
    again = self.tmp()  # a fresh cache that keeps the record, and the server's archive has changed
    shutil.copy(first / hd.RECORDED_CHECKSUMS, again)
    data = bytearray((self.served / hd.ARCHIVE_NAME).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (self.served / hd.ARCHIVE_NAME).write_bytes(bytes(data))
    with self.assertRaisesRegex(hd.SourceError, "hd_audio.tar.gz from .*: checksum mismatch: .* sha256 [0-9a-f]{64}; "
                                                ".*hd_audio_checksums.tsv recorded .* on the first download"):
      hd.fetch_official(again, [self.archive_url])
    self.assertEqual(files(again), [hd.RECORDED_CHECKSUMS])  # nothing bad is kept

  def test_a_corrupted_cached_download_is_caught(self):
    downloads = self.tmp()
    archive = hd.fetch_official(downloads, [self.archive_url])
    archive.write_bytes(archive.read_bytes()[:100])
    with self.assertRaisesRegex(hd.SourceError, "checksum mismatch: 100 bytes"):
      hd.fetch_official(downloads, [self.archive_url])
    self.assertEqual(hd.fetch_official(downloads, [self.archive_url]).read_bytes(),  # the next run downloads again
                     (self.served / hd.ARCHIVE_NAME).read_bytes())

  def test_checksum_mismatch_on_first_download(self):
    (self.served / "md5sums.txt").write_text("f" * 32 + "  hd_audio.tar.gz\n")
    downloads = self.tmp()
    with self.assertRaisesRegex(hd.SourceError, "checksum mismatch: md5 [0-9a-f]{32}, .*md5sums.txt says f{32}"):
      hd.fetch_official(downloads, [self.archive_url])
    self.assertEqual(files(downloads), [])  # neither the archive nor a record

  def test_unreachable_addresses_are_each_named(self):
    urls = [f"{self.server.url}/a/{hd.ARCHIVE_NAME}", f"{self.server.url}/b/{hd.ARCHIVE_NAME}"]
    with self.assertRaisesRegex(hd.SourceError, r"(?s)could not download hd_audio.tar.gz:.*/a/hd_audio.tar.gz.*404"
                                                r".*/b/hd_audio.tar.gz.*404"):
      hd.fetch_official(self.tmp(), urls)

  def test_built_from_the_download_and_rebuilt_from_the_cache(self):
    data_dir = self.tmp()
    builder = hd.build(str(data_dir), download_urls=[self.archive_url], n_mels=16)
    arrays = hd_loader.load_splits(builder)
    sizes = {split: len(a.labels) for split, a in arrays.items()}
    self.assertEqual(sizes, {"train": 3, "validation": 3, "test": 3})  # speaker 1 is the validation one
    self.assertEqual(sorted(arrays["test"].labels.tolist()), list(DIGITS))
    before = len(self.server.requests)
    hd.build(str(data_dir), download_urls=[self.archive_url], n_mels=16)
    self.assertEqual(self.server.requests[before:], [])

  def test_tfds_manual_dir_is_used_instead_of_the_network(self):
    manual = self.tmp()
    for name in (hd.ARCHIVE_NAME, "md5sums.txt"):
      shutil.copy(tone_archive() / name, manual)
    builder = hd.HeidelbergDigits(data_dir=str(self.tmp()), config=hd.HDConfig(n_mels=16),
                                  download_urls=[self.archive_url], file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    self.assertLen(builder.as_data_source()["test"], 3)
    self.assertEqual(self.server.requests, [])

  def test_truncated_download_is_a_clear_error_and_leaves_no_dataset(self):
    half = (self.served / hd.ARCHIVE_NAME).read_bytes()[:1000]
    (self.served / hd.ARCHIVE_NAME).write_bytes(half)
    # The md5 published for the truncated bytes: the checks pass, and extraction is what tells.
    (self.served / "md5sums.txt").write_text(hashlib.md5(half).hexdigest() + "  hd_audio.tar.gz\n")
    data_dir = self.tmp()
    with self.assertRaisesRegex(hd.SourceError, r"downloads/\S*hd_audio\S*\.tar\.gz: corrupt or truncated archive"):
      hd.build(str(data_dir), download_urls=[self.archive_url], n_mels=16)
    self.assertEqual(list(data_dir.glob("heidelberg_digits/*/1.0.0")), [])


if __name__ == "__main__":
  absltest.main()
