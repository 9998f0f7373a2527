// torch_trn3::quantize_mx: one-pass OCP MX quantization (MXFP8 E4M3/E5M2,
// MXFP4 E2M1) along the last dim, the kernel behind torch_trn3.mx.to_mx.
//
//   quantize_mx(Tensor x, ScalarType elem_dtype, int block_size, int scale_mode)
//     -> (Tensor elements, Tensor scale_bytes)
//
// scale_mode: 0 floor (OCP), 1 rceil, 2 trn3 (see torch_trn3/mx/formats.py).
// elements: elem_dtype of x's shape (FP4: float4_e2m1fn_x2, last dim halved,
// element 0 in the low nibble); scale_bytes: uint8 (..., K / block_size).
//
// Numerics (identical to the former pure-torch to_mx, checked bit-exactly by
// tests/mx against an independent numpy reference):
//  * working precision: float32 (bfloat16/float16 widen exactly), float64
//    stays float64 and is narrowed to float32 by round-to-odd after scaling,
//    so the element conversion rounds once;
//  * block amax = max of the sign-cleared bit patterns (NaN sorts above Inf);
//    scale byte = biased exponent of amax - bias - emax (+1 for trn3, +1 for
//    rceil when amax's significand exceeds max normal's), clamped to
//    [0, 254] (2^-127 .. 2^127); all-zero blocks land on 0x00;
//  * NaN or +-Inf in a block: scale byte 0xFF, element bytes all zero;
//  * element = x * 2^-s (exact: multiplying by a power of two), clamped to
//    +-max normal, rounded to nearest even (-0 keeps its sign).
//
// CPU kernel; trn tensors reach it through the boxed fallback (zero-copy CPU
// aliases). The Meta kernel gives shapes only, for torch.compile.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace torch_trn3 {

namespace {

#define TRN_ALWAYS_INLINE inline __attribute__((always_inline))

// ---- element formats ---------------------------------------------------------

// An element format as the rounding needs it: exponent bias, explicit
// mantissa bits, emax = floor(log2(max normal)), the max normal, the bit of
// the sign in the stored code, and the significand threshold above which
// rceil takes one more power of two (max normal = 2^emax * (1 + 0.75) for
// FP8, 2^emax * (1 + 0.5) for FP4).
struct E4M3 {
  static constexpr int kBias = 7, kMant = 3, kEmax = 8, kSignBit = 7;
  static constexpr float kMax = 448.0f;
  static constexpr double kMaxSignificandFrac = 0.75;
  static constexpr bool kPacked = false;
};
struct E5M2 {
  static constexpr int kBias = 15, kMant = 2, kEmax = 15, kSignBit = 7;
  static constexpr float kMax = 57344.0f;
  static constexpr double kMaxSignificandFrac = 0.75;
  static constexpr bool kPacked = false;
};
struct E2M1 {
  static constexpr int kBias = 1, kMant = 1, kEmax = 2, kSignBit = 3;
  static constexpr float kMax = 6.0f;
  static constexpr double kMaxSignificandFrac = 0.5;
  static constexpr bool kPacked = true;
};

TRN_ALWAYS_INLINE uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
TRN_ALWAYS_INLINE float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
TRN_ALWAYS_INLINE uint64_t f64_bits(double d) {
  uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
}
TRN_ALWAYS_INLINE double f64_from_bits(uint64_t u) {
  double d;
  std::memcpy(&d, &u, sizeof d);
  return d;
}

// Round a float32 to the format's code: clamp the magnitude to the max
// normal (keeping the sign), then round to nearest even. Branch-free (both
// paths computed, one selected by mask) so loops of it vectorize; the clamp
// is an integer min because the bit patterns of non-negative floats sort like
// their values (NaN never gets here: NaN blocks are zeroed). Same rounding
// scheme as c10's Float8 conversions:
//  * below the smallest normal, adding 2^k whose ulp is the format's
//    smallest subnormal rounds (RNE, by the FPU) to a multiple of it and the
//    low bits are the code;
//  * from the smallest normal up, rebias the exponent and round the mantissa
//    to kMant bits by integer addition (half - 1 + the kept lsb: ties to even).
template <typename F>
TRN_ALWAYS_INLINE uint32_t encode(float f) {
  constexpr int kDrop = 23 - F::kMant;
  constexpr uint32_t kMinNormal = uint32_t(127 + 1 - F::kBias) << 23;
  constexpr uint32_t kDenormMagic = uint32_t(127 + kDrop + 1 - F::kBias) << 23;
  const uint32_t max_bits = f32_bits(F::kMax);
  const uint32_t bits = f32_bits(f);
  const uint32_t sign = bits & 0x80000000u;
  uint32_t mag = bits ^ sign;
  mag = mag < max_bits ? mag : max_bits;
  const uint32_t sub =
      f32_bits(f32_from_bits(mag) + f32_from_bits(kDenormMagic)) - kDenormMagic;
  const uint32_t normal =
      (mag + (uint32_t(F::kBias - 127) << 23) + ((1u << (kDrop - 1)) - 1) +
       ((mag >> kDrop) & 1u)) >> kDrop;
  const uint32_t is_sub = 0u - uint32_t(mag < kMinNormal);
  const uint32_t code = (sub & is_sub) | (normal & ~is_sub);
  return code | (sign >> (31 - F::kSignBit));
}

// float64 -> float32 rounding to odd (exact values stay exact), so the later
// round-to-nearest-even to the element format equals one direct rounding.
// Same steps as torch_trn3/mx/rounding.py: cast to nearest, step one ulp
// toward zero where that went up in magnitude, set the lsb where inexact.
TRN_ALWAYS_INLINE float narrow_to_odd(double v) {
  const float nearest = static_cast<float>(v);
  const double widened = static_cast<double>(nearest);
  const uint32_t inexact = widened != v;
  const uint32_t overshot = std::abs(widened) > std::abs(v);
  return f32_from_bits((f32_bits(nearest) - overshot) | inexact);
}

// ---- scales ---------------------------------------------------------------------

// Per call constants of the scale rule in one working precision.
struct ScaleRule {
  int64_t offset;       // byte = biased exponent of amax + offset (+ rceil step)
  bool rceil;
  uint64_t threshold;   // rceil: significand bits above this take one more step
};

template <typename F, int kMantBits, int kExpBias>
ScaleRule scale_rule(int64_t mode) {
  ScaleRule r;
  r.offset = 127 - kExpBias - F::kEmax + (mode == 2 ? 1 : 0);
  r.rceil = mode == 1;
  r.threshold = static_cast<uint64_t>(F::kMaxSignificandFrac * double(uint64_t(1) << kMantBits));
  return r;
}

// The clamped scale byte (0..254) for a non-special block.
TRN_ALWAYS_INLINE uint32_t scale_byte(uint64_t amax_bits, int kMantBits, uint64_t biased, const ScaleRule& r) {
  int64_t byte = static_cast<int64_t>(biased) + r.offset;
  if (r.rceil) byte += (amax_bits & ((uint64_t(1) << kMantBits) - 1)) > r.threshold;
  return static_cast<uint32_t>(std::clamp<int64_t>(byte, 0, 254));
}

// ---- block kernels ------------------------------------------------------------------
//
// The hot loops run over fixed 32-element lanes (kLane) so the compiler
// vectorizes them at -O2 (a known trip count); blocks whose size is a
// multiple of 32 (the MX block and the common case) take that path, others a
// scalar loop with the same arithmetic. Each kernel is compiled twice, for
// the baseline ISA and for AVX2 (picked at run time), from one always-inline
// body.

constexpr int64_t kLane = 32;

TRN_ALWAYS_INLINE float widen(float v) { return v; }
TRN_ALWAYS_INLINE float widen(c10::BFloat16 v) { return f32_from_bits(uint32_t(v.x) << 16); }
// Exact float16 -> float32 without branches: shift the exponent and mantissa
// into place and multiply by 2^(127 - 15), which also normalizes subnormals
// exactly; Inf/NaN (exponent 31) are rebuilt with float32's all-ones exponent.
TRN_ALWAYS_INLINE float widen(c10::Half v) {
  const uint32_t h = v.x;
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t em = h & 0x7FFFu;
  const uint32_t finite = f32_bits(f32_from_bits(em << 13) * f32_from_bits(uint32_t(127 + 112) << 23));
  const uint32_t special = 0x7F800000u | ((em & 0x3FFu) << 13);
  const uint32_t is_special = 0u - uint32_t(em >= 0x7C00u);
  return f32_from_bits(sign | (special & is_special) | (finite & ~is_special));
}
TRN_ALWAYS_INLINE double widen(double v) { return v; }

template <typename F>
constexpr int64_t storage_len(int64_t n) {
  return F::kPacked ? n / 2 : n;
}

// max over n elements of the sign-cleared float32 bits (NaN sorts above Inf).
template <int64_t kN, typename In>
TRN_ALWAYS_INLINE uint32_t amax_bits_f32(const In* in, int64_t n) {
  const int64_t len = kN > 0 ? kN : n;
  uint32_t amax = 0;
  for (int64_t i = 0; i < len; ++i) {
    const uint32_t mag = f32_bits(widen(in[i])) & 0x7FFFFFFFu;
    amax = amax > mag ? amax : mag;
  }
  return amax;
}

template <int64_t kN>
TRN_ALWAYS_INLINE uint64_t amax_bits_f64(const double* in, int64_t n) {
  const int64_t len = kN > 0 ? kN : n;
  uint64_t amax = 0;
  for (int64_t i = 0; i < len; ++i) {
    const uint64_t mag = f64_bits(in[i]) & uint64_t(0x7FFFFFFFFFFFFFFF);
    amax = amax > mag ? amax : mag;
  }
  return amax;
}

TRN_ALWAYS_INLINE float scale_element(float v, float reciprocal) { return v * reciprocal; }
TRN_ALWAYS_INLINE float scale_element(double v, double reciprocal) {
  return narrow_to_odd(v * reciprocal);
}

// Encodes n (kN if > 0) elements in[i] * reciprocal into out (FP4: n / 2
// packed bytes, element 0 low).
template <typename F, int64_t kN, typename In, typename R>
TRN_ALWAYS_INLINE void encode_run(const In* __restrict__ in, int64_t n, R reciprocal,
                                  uint8_t* __restrict__ out) {
  const int64_t len = kN > 0 ? kN : n;
  if constexpr (F::kPacked && kN > 0) {
    // Codes first (a plain vectorizable loop), then the nibble packing.
    uint8_t codes[kN];
    for (int64_t i = 0; i < kN; ++i) {
      codes[i] = static_cast<uint8_t>(encode<F>(scale_element(widen(in[i]), reciprocal)));
    }
    for (int64_t j = 0; j < kN / 2; ++j) {
      out[j] = static_cast<uint8_t>(codes[2 * j] | (codes[2 * j + 1] << 4));
    }
  } else if constexpr (F::kPacked) {
    for (int64_t j = 0; j < len / 2; ++j) {
      const float lo = scale_element(widen(in[2 * j]), reciprocal);
      const float hi = scale_element(widen(in[2 * j + 1]), reciprocal);
      out[j] = static_cast<uint8_t>(encode<F>(lo) | (encode<F>(hi) << 4));
    }
  } else {
    for (int64_t i = 0; i < len; ++i) {
      out[i] = static_cast<uint8_t>(
          encode<F>(scale_element(widen(in[i]), reciprocal)));
    }
  }
}

// Working-precision traits: float32 (float/bfloat16/half in) or float64.
template <typename In>
struct Work {
  using Bits = uint32_t;
  using Real = float;
  static constexpr int kMant = 23;
  static constexpr uint32_t kSpecial = 0xFF;
  template <int64_t kN>
  static TRN_ALWAYS_INLINE Bits amax(const In* in, int64_t n) { return amax_bits_f32<kN>(in, n); }
  // 2^-(byte - 127); always normal for a float32 amax (the byte stays <= 253).
  static TRN_ALWAYS_INLINE Real reciprocal(uint32_t byte) { return f32_from_bits((254u - byte) << 23); }
};
template <>
struct Work<double> {
  using Bits = uint64_t;
  using Real = double;
  static constexpr int kMant = 52;
  static constexpr uint64_t kSpecial = 0x7FF;
  template <int64_t kN>
  static TRN_ALWAYS_INLINE Bits amax(const double* in, int64_t n) { return amax_bits_f64<kN>(in, n); }
  static TRN_ALWAYS_INLINE Real reciprocal(uint32_t byte) {
    return f64_from_bits(uint64_t(1023 + 127 - byte) << 52);
  }
};

template <typename F, typename In>
TRN_ALWAYS_INLINE void quantize_blocks_body(const In* x, uint8_t* elems, uint8_t* scales,
                                            int64_t block, int64_t begin, int64_t end,
                                            const ScaleRule& rule) {
  using W = Work<In>;
  const bool lanes = block % kLane == 0;
  for (int64_t b = begin; b < end; ++b) {
    const In* in = x + b * block;
    uint8_t* out = elems + b * storage_len<F>(block);
    typename W::Bits amax = 0;
    if (lanes) {
      for (int64_t i = 0; i < block; i += kLane) {
        const auto m = W::template amax<kLane>(in + i, kLane);
        amax = amax > m ? amax : m;
      }
    } else {
      amax = W::template amax<0>(in, block);
    }
    const auto biased = amax >> W::kMant;
    if (biased == W::kSpecial) {   // NaN or Inf: poison the block
      scales[b] = 0xFF;
      std::memset(out, 0, storage_len<F>(block));
      continue;
    }
    const uint32_t byte = scale_byte(amax, W::kMant, biased, rule);
    scales[b] = static_cast<uint8_t>(byte);
    const auto reciprocal = W::reciprocal(byte);
    if (lanes) {
      for (int64_t i = 0; i < block; i += kLane) {
        encode_run<F, kLane>(in + i, kLane, reciprocal, out + storage_len<F>(i));
      }
    } else {
      encode_run<F, 0>(in, block, reciprocal, out);
    }
  }
}

template <typename F, typename In>
void quantize_blocks_default(const In* x, uint8_t* elems, uint8_t* scales, int64_t block,
                             int64_t begin, int64_t end, const ScaleRule& rule) {
  quantize_blocks_body<F>(x, elems, scales, block, begin, end, rule);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define TRN_HAVE_AVX2_CLONE 1
template <typename F, typename In>
__attribute__((target("avx2"))) void quantize_blocks_avx2(const In* x, uint8_t* elems,
                                                          uint8_t* scales, int64_t block,
                                                          int64_t begin, int64_t end,
                                                          const ScaleRule& rule) {
  quantize_blocks_body<F>(x, elems, scales, block, begin, end, rule);
}
#endif

template <typename F, typename In>
void quantize_blocks(const In* x, uint8_t* elems, uint8_t* scales, int64_t block, int64_t begin,
                     int64_t end, const ScaleRule& rule) {
#ifdef TRN_HAVE_AVX2_CLONE
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return quantize_blocks_avx2<F>(x, elems, scales, block, begin, end, rule);
#endif
  quantize_blocks_default<F>(x, elems, scales, block, begin, end, rule);
}

// Runs fn(begin, end) over [0, n) on torch's intra-op threads.
//
// at::parallel_for is a header template whose threading is compiled in only
// with -fopenmp (torch's OpenMP backend), which this extension is not built
// with; there it would run serially. A TensorIterator over the output scale
// bytes (one byte per block) splits with torch's own, compiled parallel_for:
// the loop recovers the block index from its data pointer.
template <typename Fn>
void parallel_over_blocks(const at::Tensor& scale_bytes, int64_t grain, const Fn& fn) {
  const int64_t n = scale_bytes.numel();
  if (n == 0) return;
#ifdef _OPENMP
  at::parallel_for(0, n, grain, fn);
#else
  if (at::get_num_threads() == 1 || n <= grain || at::in_parallel_region()) {
    fn(0, n);
    return;
  }
  auto flat = scale_bytes.view({n});
  auto iter = at::TensorIteratorConfig()
                  .add_output(flat)
                  .check_all_same_dtype(false)
                  .resize_outputs(false)
                  .build();
  char* base = static_cast<char*>(flat.data_ptr());
  iter.for_each(
      [&](char** data, const int64_t* strides, int64_t size0, int64_t size1) {
        TORCH_INTERNAL_ASSERT(size1 == 1 || strides[1] == size0 * strides[0]);
        const int64_t begin = data[0] - base;
        fn(begin, begin + size0 * size1);
      },
      grain);
#endif
}

template <typename F>
void quantize_typed(const at::Tensor& x, at::Tensor& elements, at::Tensor& scales,
                    int64_t block, int64_t mode) {
  auto* elems = static_cast<uint8_t*>(elements.data_ptr());
  auto* sc = static_cast<uint8_t*>(scales.data_ptr());
  // ~64 KiB of input per task at least: below that, threading costs more.
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 14) / block);
  if (x.scalar_type() == at::kDouble) {
    const auto rule = scale_rule<F, 52, 1023>(mode);
    const double* in = x.const_data_ptr<double>();
    parallel_over_blocks(scales, grain, [&](int64_t begin, int64_t end) {
      quantize_blocks<F>(in, elems, sc, block, begin, end, rule);
    });
    return;
  }
  const auto rule = scale_rule<F, 23, 127>(mode);
  auto run = [&](const auto* in) {
    parallel_over_blocks(scales, grain, [&](int64_t begin, int64_t end) {
      quantize_blocks<F>(in, elems, sc, block, begin, end, rule);
    });
  };
  switch (x.scalar_type()) {
    case at::kFloat: run(x.const_data_ptr<float>()); break;
    case at::kBFloat16: run(x.const_data_ptr<c10::BFloat16>()); break;
    case at::kHalf: run(x.const_data_ptr<c10::Half>()); break;
    default: TORCH_CHECK(false, "unreachable");
  }
}

// ---- argument checks and shapes ------------------------------------------------------

bool is_packed(at::ScalarType elem) { return elem == at::ScalarType::Float4_e2m1fn_x2; }

void check_args(const at::Tensor& x, at::ScalarType elem, int64_t block, int64_t mode) {
  TORCH_CHECK(elem == at::ScalarType::Float8_e4m3fn || elem == at::ScalarType::Float8_e5m2 ||
                  is_packed(elem),
              "quantize_mx: unsupported MX element dtype ", elem,
              "; supported: Float8_e4m3fn, Float8_e5m2, Float4_e2m1fn_x2");
  const auto dt = x.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf || dt == at::kDouble,
              "quantize_mx: x has dtype ", dt, "; quantizing needs Float, BFloat16, Half or Double");
  TORCH_CHECK(x.dim() >= 1, "quantize_mx: x must have at least one dim");
  TORCH_CHECK(block >= 1, "quantize_mx: block_size must be positive, got ", block);
  TORCH_CHECK(!is_packed(elem) || block % 2 == 0,
              "quantize_mx: FP4 blocks must hold whole bytes; block_size ", block, " is odd");
  TORCH_CHECK(mode >= 0 && mode <= 2, "quantize_mx: scale_mode must be 0 (floor), 1 (rceil) "
              "or 2 (trn3), got ", mode);
}

template <typename Size>
std::pair<std::vector<Size>, std::vector<Size>> out_shapes(c10::ArrayRef<Size> in,
                                                           at::ScalarType elem, int64_t block) {
  std::vector<Size> elem_shape(in.begin(), in.end());
  std::vector<Size> scale_shape(in.begin(), in.end());
  const Size k = in.back();
  if (is_packed(elem)) elem_shape.back() = k / 2;
  scale_shape.back() = k / block;
  return {std::move(elem_shape), std::move(scale_shape)};
}

std::tuple<at::Tensor, at::Tensor> quantize_mx_cpu(const at::Tensor& x_in, at::ScalarType elem,
                                                   int64_t block, int64_t mode) {
  check_args(x_in, elem, block, mode);
  const int64_t k = x_in.size(-1);
  TORCH_CHECK(k > 0 && k % block == 0, "quantize_mx: last dim ", k,
              " is not a positive multiple of the block size ", block);
  const auto x = x_in.contiguous();
  auto [elem_shape, scale_shape] = out_shapes<int64_t>(x.sizes(), elem, block);
  auto elements = at::empty(elem_shape, x.options().dtype(elem));
  auto scales = at::empty(scale_shape, x.options().dtype(at::kByte));
  switch (elem) {
    case at::ScalarType::Float8_e4m3fn: quantize_typed<E4M3>(x, elements, scales, block, mode); break;
    case at::ScalarType::Float8_e5m2: quantize_typed<E5M2>(x, elements, scales, block, mode); break;
    default: quantize_typed<E2M1>(x, elements, scales, block, mode); break;
  }
  return {elements, scales};
}

std::tuple<at::Tensor, at::Tensor> quantize_mx_meta(const at::Tensor& x, at::ScalarType elem,
                                                    int64_t block, int64_t mode) {
  check_args(x, elem, block, mode);
  auto [elem_shape, scale_shape] = out_shapes<c10::SymInt>(x.sym_sizes(), elem, block);
  auto elements = at::empty_symint(elem_shape, x.options().dtype(elem));
  auto scales = at::empty_symint(scale_shape, x.options().dtype(at::kByte));
  return {elements, scales};
}

}  // namespace

TORCH_LIBRARY(torch_trn3, m) {
  m.def("quantize_mx(Tensor x, ScalarType elem_dtype, int block_size, int scale_mode) "
        "-> (Tensor elements, Tensor scale_bytes)");
}

TORCH_LIBRARY_IMPL(torch_trn3, CPU, m) {
  m.impl("quantize_mx", &quantize_mx_cpu);
}

TORCH_LIBRARY_IMPL(torch_trn3, Meta, m) {
  m.impl("quantize_mx", &quantize_mx_meta);
}

}  // namespace torch_trn3
