// Python bindings of the BPE core (module gpt._bpe). gpt/tokenizer.py wraps these in the public
// Tokenizer class; nothing else should import this module directly.
//
// Text goes in as str and is read through CPython's cached UTF-8 view (no copy for ASCII
// strings). Encoding and training run with the GIL released.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <mutex>
#include <exception>
#include <thread>

#include "bpe.h"
#include "pretokenize.h"

namespace py = pybind11;
using bpe::Rank;

namespace {

// UTF-8 bytes of a str. Lone surrogates cannot be UTF-8; as tiktoken does, they are replaced by
// U+FFFD (via a UTF-16 round trip, which also joins a valid surrogate pair into its character).
std::string_view utf8_of(py::handle obj, std::string& storage, const char* what = "text") {
  if (!PyUnicode_Check(obj.ptr()))
    throw py::type_error(std::string(what) + " must be str, not " + Py_TYPE(obj.ptr())->tp_name);
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(obj.ptr(), &n);
  if (p) return std::string_view(p, size_t(n));
  if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) throw py::error_already_set();
  PyErr_Clear();
  py::object fixed = py::reinterpret_borrow<py::object>(obj)
                         .attr("encode")("utf-16", "surrogatepass")
                         .attr("decode")("utf-16", "replace");
  storage = fixed.cast<std::string>();
  return storage;
}

// The vocabulary plus one ready-made Python int per id: building the result list is then an
// INCREF per token instead of an allocation (this conversion otherwise costs a third of encode).
struct PyVocab : bpe::Vocab {
  std::vector<py::object> ints;
  PyVocab(std::vector<std::string> t, std::vector<Rank> r, std::vector<std::pair<std::string, Rank>> s)
      : bpe::Vocab(std::move(t), std::move(r), std::move(s)) {
    ints.reserve(size_t(max_id()) + 1);
    for (size_t i = 0; i <= max_id(); ++i) ints.push_back(py::int_(i));
  }
};

py::list to_list(const PyVocab& v, const Rank* ids, size_t n) {
  PyObject* lst = PyList_New(Py_ssize_t(n));
  if (!lst) throw py::error_already_set();
  for (size_t i = 0; i < n; ++i) {
    PyObject* o = v.ints[ids[i]].ptr();
    Py_INCREF(o);
    PyList_SET_ITEM(lst, Py_ssize_t(i), o);
  }
  return py::reinterpret_steal<py::list>(lst);
}

py::array_t<uint32_t> to_array(const std::vector<Rank>& v) {
  py::array_t<uint32_t> arr(py::ssize_t(v.size()));
  if (!v.empty()) std::copy(v.begin(), v.end(), arr.mutable_data());
  return arr;
}

[[noreturn]] void throw_bad_id(long long id) {
  throw py::value_error("token id " + std::to_string(id) + " is not in the vocabulary");
}

// A sequence of ints (list, tuple, numpy array, ...) as ranks; negative or too large ids are
// reported as unknown.
std::vector<Rank> ids_of(py::handle obj) {
  std::vector<Rank> ids;
  if (py::isinstance<py::array>(obj)) {
    auto arr = py::array_t<long long, py::array::c_style | py::array::forcecast>::ensure(obj);
    if (!arr) throw py::type_error("token ids must be integers");
    ids.reserve(size_t(arr.size()));
    const long long* d = arr.data();
    for (py::ssize_t i = 0; i < arr.size(); ++i) {
      if (d[i] < 0 || d[i] > 0xFFFFFFFELL) throw_bad_id(d[i]);
      ids.push_back(Rank(d[i]));
    }
    return ids;
  }
  py::object seq = py::reinterpret_steal<py::object>(PySequence_Fast(obj.ptr(), "token ids must be a sequence of ints"));
  if (!seq) throw py::error_already_set();
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
  PyObject** items = PySequence_Fast_ITEMS(seq.ptr());
  ids.reserve(size_t(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (!PyLong_Check(items[i]))
      throw py::type_error(std::string("token ids must be ints, got ") + Py_TYPE(items[i])->tp_name);
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(items[i], &overflow);
    if (overflow) throw py::value_error("token id " + py::str(items[i]).cast<std::string>() + " is not in the vocabulary");
    if (v < 0 || v > 0xFFFFFFFELL) throw_bad_id(v);
    ids.push_back(Rank(v));
  }
  return ids;
}

std::vector<std::string> strings_of(const py::iterable& items, const char* what) {
  std::vector<std::string> out;
  for (py::handle h : items) {
    std::string storage;
    std::string_view v = utf8_of(h, storage, what);
    out.emplace_back(v);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_bpe, m) {
  m.doc() = "C++ byte-level BPE core (use gpt.tokenizer.Tokenizer)";
  m.attr("UNICODE_VERSION") = bpe::unicode::kUnicodeVersion;

  m.def("pretokenize", [](py::handle text) {
    std::string storage;
    std::string_view s = utf8_of(text, storage);
    py::list out;
    bpe::pretokenize(s.data(), s.size(), [&](size_t b, size_t e) {
      out.append(py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(s.data() + b, Py_ssize_t(e - b), "replace")));
    });
    return out;
  }, py::arg("text"), "GPT-2 pre-tokenization of `text` into pieces (for tests and debugging).");

  m.def("work_counters", []() {
    const bpe::WorkCounters& c = bpe::work_counters();
    py::dict d;
    d["merge_steps"] = c.merge_steps;
    d["split_steps"] = c.split_steps;
    return d;
  }, "This thread's work counters since it started (bpe.h, WorkCounters): tests bound an algorithm's "
     "cost by their difference instead of by timing it.");

  py::class_<PyVocab>(m, "CoreBPE")
      .def(py::init([](std::vector<py::bytes> tokens, std::vector<Rank> ranks, std::vector<std::pair<std::string, Rank>> specials) {
             std::vector<std::string> t;
             t.reserve(tokens.size());
             for (auto& b : tokens) t.emplace_back(std::string(b));
             try {
               return new PyVocab(std::move(t), std::move(ranks), std::move(specials));
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("tokens"), py::arg("ranks"), py::arg("specials"))
      .def_property_readonly("n_vocab", &bpe::Vocab::n_vocab)
      .def("encode_ordinary", [](const PyVocab& v, py::handle text, bool numpy) -> py::object {
             std::string storage;
             std::string_view s = utf8_of(text, storage);
             std::vector<Rank> out;
             {
               py::gil_scoped_release release;
               out.reserve(s.size() / 3 + 1);
               v.encode_ordinary(s, out);
             }
             if (numpy) return to_array(out);
             return to_list(v, out.data(), out.size());
           }, py::arg("text"), py::arg("numpy") = false)
      .def("encode", [](const PyVocab& v, py::handle text, std::vector<std::string> allowed, bool numpy) -> py::object {
             std::string storage;
             std::string_view s = utf8_of(text, storage);
             std::vector<Rank> out;
             {
               py::gil_scoped_release release;
               out.reserve(s.size() / 3 + 1);
               v.encode(s, allowed, out);
             }
             if (numpy) return to_array(out);
             return to_list(v, out.data(), out.size());
           }, py::arg("text"), py::arg("allowed"), py::arg("numpy") = false)
      .def("encode_batch", [](const PyVocab& v, py::iterable texts, std::vector<std::string> allowed,
                              int num_threads, bool numpy, std::vector<std::string> disallowed) -> py::list {
             // Views into the str objects (kept alive by `keep`), then encode on native threads.
             std::vector<py::object> keep;
             std::deque<std::string> storage;  // repaired copies (lone surrogates); stable addresses
             std::vector<std::string_view> views;
             for (py::handle h : texts) {
               keep.push_back(py::reinterpret_borrow<py::object>(h));
               std::string st;
               std::string_view sv = utf8_of(h, st);
               if (sv.data() == st.data()) { storage.push_back(std::move(st)); sv = storage.back(); }
               views.push_back(sv);
             }
             std::vector<std::vector<Rank>> results(views.size());
             {
               py::gil_scoped_release release;
               const size_t n_threads = std::max<size_t>(1, std::min<size_t>(size_t(num_threads), views.size()));
               std::atomic<size_t> next{0};
               std::exception_ptr failure;
               std::atomic<bool> failed{false};
               // Disallowed special-token text is looked for on the worker threads too (it is a scan
               // of every text); the error names the first such text in order, at its leftmost hit.
               std::mutex hit_mutex;
               size_t hit_doc = views.size();
               std::string hit_token;
               auto find_disallowed = [&](size_t i) {
                 size_t best = std::string_view::npos;
                 const std::string* token = nullptr;
                 for (const auto& d : disallowed) {
                   size_t at = d.empty() ? std::string_view::npos : views[i].find(d);
                   if (at < best || (at == best && token && d.size() > token->size())) { best = at; token = &d; }
                 }
                 if (!token) return false;
                 std::lock_guard<std::mutex> lock(hit_mutex);
                 if (i < hit_doc) { hit_doc = i; hit_token = *token; }
                 return true;
               };
               auto worker = [&]() {
                 try {
                   for (size_t i; (i = next.fetch_add(1)) < views.size();) {
                     if (!disallowed.empty() && find_disallowed(i)) continue;
                     results[i].reserve(views[i].size() / 3 + 1);
                     if (allowed.empty()) v.encode_ordinary(views[i], results[i]);
                     else v.encode(views[i], allowed, results[i]);
                   }
                 } catch (...) {
                   if (!failed.exchange(true)) failure = std::current_exception();
                 }
               };
               std::vector<std::thread> pool;
               for (size_t t = 1; t < n_threads; ++t) pool.emplace_back(worker);
               worker();
               for (auto& th : pool) th.join();
               if (failure) std::rethrow_exception(failure);
               if (hit_doc < views.size()) {
                 py::gil_scoped_acquire acquire;
                 std::string repr = py::repr(py::str(hit_token)).cast<std::string>();
                 throw py::value_error("the text contains the special token " + repr + ", which is disallowed. Pass "
                                       "allowed_special={" + repr + "} to encode it as the special token, or "
                                       "disallowed_special=() to encode it as ordinary text.");
               }
             }
             py::list out(results.size());
             for (size_t i = 0; i < results.size(); ++i) {
               if (numpy) out[i] = to_array(results[i]);
               else out[i] = to_list(v, results[i].data(), results[i].size());
             }
             return out;
           }, py::arg("texts"), py::arg("allowed"), py::arg("num_threads"), py::arg("numpy") = false,
           py::arg("disallowed") = std::vector<std::string>())
      .def("decode_bytes", [](const PyVocab& v, py::handle ids) {
             std::vector<Rank> r = ids_of(ids);
             std::string out;
             try {
               out.reserve(r.size() * 4);
               v.decode(r.data(), r.size(), out);
             } catch (const bpe::UnknownToken& e) {
               throw_bad_id(e.id);
             }
             return py::bytes(out);
           }, py::arg("ids"))
      .def("token_bytes", [](const PyVocab& v, long long id) {
             if (id < 0 || id > 0xFFFFFFFELL || !v.has_id(Rank(id))) throw_bad_id(id);
             std::string_view b = v.token_bytes(Rank(id));
             return py::bytes(b.data(), b.size());
           }, py::arg("id"));

  py::class_<bpe::Trainer>(m, "Trainer")
      .def(py::init<>())
      .def("add_texts", [](bpe::Trainer& t, py::iterable texts) {
             std::vector<std::string> owned = strings_of(texts, "each document");
             py::gil_scoped_release release;
             for (auto& s : owned) t.add_text(s);
           }, py::arg("texts"), "Pre-tokenize and count the pieces of each text.")
      .def_property_readonly("n_unique_pieces", &bpe::Trainer::n_unique_pieces)
      .def("train", [](bpe::Trainer& t, size_t n_merges, py::object progress) {
             std::function<void(size_t, size_t)> cb;
             if (!progress.is_none()) {
               cb = [&progress](size_t done, size_t total) {
                 py::gil_scoped_acquire acquire;
                 if (PyErr_CheckSignals() != 0) throw py::error_already_set();  // Ctrl-C stops training
                 progress(done, total);
               };
             }
             std::vector<std::string> tokens;
             {
               py::gil_scoped_release release;
               tokens = t.train(n_merges, cb);
             }
             py::list out;
             for (auto& tok : tokens) out.append(py::bytes(tok));
             return out;
           }, py::arg("n_merges"), py::arg("progress") = py::none(),
           "Learn up to n_merges merges; returns token bytes by rank.");
}
