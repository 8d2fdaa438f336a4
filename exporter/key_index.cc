#include "exporter/key_index.h"

#include <algorithm>

#include "exporter/internal/huge_pages.h"

namespace freshet {

KeyIndex::KeyIndex(const KeyIndex& other) : mask_(other.mask_), size_(other.size_) {
  internal::CopyHuge(&slots_, other.slots_);
}

KeyIndex& KeyIndex::operator=(const KeyIndex& other) {
  if (this != &other) {
    std::vector<Slot> slots;
    internal::CopyHuge(&slots, other.slots_);
    slots_.swap(slots);
    mask_ = other.mask_;
    size_ = other.size_;
  }
  return *this;
}

uint32_t KeyIndex::Insert(uint64_t key, uint32_t row) {
  if ((size_ + 1) * 2 > slots_.size()) Rehash(std::max<size_t>(16, slots_.size() * 2));
  for (size_t i = Home(key);; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.row == kNone) {
      s.key = key;
      s.row = row;
      ++size_;
      return kNone;
    }
    if (s.key == key) return s.row;
  }
}

void KeyIndex::Set(uint64_t key, uint32_t row) {
  if ((size_ + 1) * 2 > slots_.size()) Rehash(std::max<size_t>(16, slots_.size() * 2));
  for (size_t i = Home(key);; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.row == kNone) {
      s.key = key;
      s.row = row;
      ++size_;
      return;
    }
    if (s.key == key) {
      s.row = row;
      return;
    }
  }
}

uint32_t KeyIndex::Erase(uint64_t key) {
  if (size_ == 0) return kNone;
  size_t i = Home(key);
  for (;; i = (i + 1) & mask_) {
    if (slots_[i].row == kNone) return kNone;
    if (slots_[i].key == key) break;
  }
  const uint32_t row = slots_[i].row;
  // Backward shift: pull later entries of the probe run into the hole unless
  // their home lies cyclically in (hole, their slot].
  for (size_t j = i;;) {
    j = (j + 1) & mask_;
    if (slots_[j].row == kNone) break;
    const size_t h = Home(slots_[j].key);
    const bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
    if (!stays) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i].row = kNone;
  --size_;
  return row;
}

void KeyIndex::Reserve(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  if (cap > slots_.size()) Rehash(cap);
}

void KeyIndex::Clear() {
  slots_.clear();
  mask_ = 0;
  size_ = 0;
}

void KeyIndex::Rehash(size_t capacity) {
  std::vector<Slot> old;
  old.swap(slots_);
  internal::AssignHuge(&slots_, capacity, Slot{0, kNone});
  mask_ = capacity - 1;
  for (const Slot& s : old) {
    if (s.row == kNone) continue;
    for (size_t i = Home(s.key);; i = (i + 1) & mask_) {
      if (slots_[i].row == kNone) {
        slots_[i] = s;
        break;
      }
    }
  }
}

}  // namespace freshet
