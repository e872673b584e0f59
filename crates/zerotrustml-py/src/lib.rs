//! The `zerotrustml._core` extension: thin delegations to zerotrustml-core.
//! This crate only converts types, releases the GIL and maps errors; every
//! rule lives in the core.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use zerotrustml_core as core;
use zerotrustml_core::{validation, CoreError, Rows};

create_exception!(
    zerotrustml.exceptions,
    ValidationError,
    PyValueError,
    "Bad input to a ZeroTrustML rule; the message names the parameter."
);
create_exception!(
    zerotrustml.exceptions,
    EmptyInputError,
    ValidationError,
    "An input that must not be empty was empty."
);
create_exception!(zerotrustml.exceptions, ShapeError, ValidationError, "Ragged rows or a vector of the wrong length.");
create_exception!(zerotrustml.exceptions, NonFiniteError, ValidationError, "A NaN or infinite value in an input.");
create_exception!(
    zerotrustml.exceptions,
    PreconditionError,
    ValidationError,
    "A rule's precondition on n and f does not hold."
);
create_exception!(zerotrustml.exceptions, ParameterError, ValidationError, "A parameter outside its domain.");
create_exception!(
    zerotrustml.exceptions,
    SubmissionRejected,
    ValidationError,
    "A submission broke a validation rule; `field` names the field and `code` the rule."
);

/// The one place core errors become Python exceptions.
struct PyCoreError(CoreError);

impl From<CoreError> for PyCoreError {
    fn from(e: CoreError) -> Self {
        PyCoreError(e)
    }
}

impl From<PyCoreError> for PyErr {
    fn from(PyCoreError(e): PyCoreError) -> PyErr {
        let msg = e.to_string();
        match e {
            CoreError::Empty { .. } => EmptyInputError::new_err(msg),
            CoreError::Shape { .. } => ShapeError::new_err(msg),
            CoreError::NonFinite { .. } => NonFiniteError::new_err(msg),
            CoreError::Precondition { .. } => PreconditionError::new_err(msg),
            CoreError::InvalidParameter { .. } => ParameterError::new_err(msg),
        }
    }
}

/// Updates as numpy hands them over: one (n, d) array or a list of 1-D
/// arrays, float32 or float64, C-contiguous (the Python layer ensures it,
/// copying only arrays that are not).
#[derive(FromPyObject)]
enum Updates<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
    ListF32(Vec<PyReadonlyArray1<'py, f32>>),
    ListF64(Vec<PyReadonlyArray1<'py, f64>>),
}

fn not_contiguous() -> PyErr {
    PyTypeError::new_err("updates: arrays must be C-contiguous")
}

fn rows2<'a, T: numpy::Element + core::Real>(a: &'a PyReadonlyArray2<'_, T>) -> PyResult<Rows<'a, T>> {
    let shape = a.shape();
    let data = a.as_slice().map_err(|_| not_contiguous())?;
    Ok(Rows::from_flat(data, shape[0], shape[1]).map_err(PyCoreError)?)
}

fn rows1<'a, T: numpy::Element + core::Real>(list: &'a [PyReadonlyArray1<'_, T>]) -> PyResult<Rows<'a, T>> {
    let slices = list.iter().map(|a| a.as_slice().map_err(|_| not_contiguous())).collect::<PyResult<Vec<_>>>()?;
    Ok(Rows::new(slices).map_err(PyCoreError)?)
}

/// Runs `$body` (with `$rows` bound to the input rows of the right element
/// type) without the GIL, and hands its result to `$wrap` with the GIL.
macro_rules! dispatch {
    ($py:expr, $updates:expr, |$rows:ident| $body:expr, |$out:ident| $wrap:expr) => {
        match &$updates {
            Updates::F32(a) => {
                let $rows = rows2(a)?;
                let $out = $py.detach(|| $body).map_err(PyCoreError)?;
                $wrap
            }
            Updates::F64(a) => {
                let $rows = rows2(a)?;
                let $out = $py.detach(|| $body).map_err(PyCoreError)?;
                $wrap
            }
            Updates::ListF32(l) => {
                let $rows = rows1(l)?;
                let $out = $py.detach(|| $body).map_err(PyCoreError)?;
                $wrap
            }
            Updates::ListF64(l) => {
                let $rows = rows1(l)?;
                let $out = $py.detach(|| $body).map_err(PyCoreError)?;
                $wrap
            }
        }
    };
}

type AggTuple<'py> = (Bound<'py, PyAny>, Vec<usize>, Bound<'py, PyArray1<f64>>, usize);

fn agg_tuple<'py, T: numpy::Element>(py: Python<'py>, a: core::Aggregate<T>) -> AggTuple<'py> {
    (PyArray1::from_vec(py, a.vector).into_any(), a.selected, PyArray1::from_vec(py, a.scores), a.iterations)
}

type MixedTuple<'py> = (Bound<'py, PyAny>, Vec<Vec<usize>>);

fn mixed_tuple<'py, T: numpy::Element>(py: Python<'py>, m: core::Mixed<T>) -> PyResult<MixedTuple<'py>> {
    let g = m.groups.len();
    let arr = PyArray1::from_vec(py, m.rows).reshape([g, m.d])?;
    Ok((arr.into_any(), m.groups))
}

fn variant(name: &str) -> PyResult<core::KrumVariant> {
    match name {
        "standard" => Ok(core::KrumVariant::Standard),
        "byzfl" => Ok(core::KrumVariant::ByzFl),
        other => Err(ParameterError::new_err(format!("variant: expected 'standard' or 'byzfl', got {other:?}"))),
    }
}

#[pyfunction]
#[pyo3(signature = (updates, weights=None))]
fn mean<'py>(py: Python<'py>, updates: Updates<'py>, weights: Option<Vec<f64>>) -> PyResult<AggTuple<'py>> {
    dispatch!(py, updates, |r| core::mean(&r, weights.as_deref()), |a| Ok(agg_tuple(py, a)))
}

#[pyfunction]
#[pyo3(signature = (updates, f, variant="standard"))]
fn krum<'py>(py: Python<'py>, updates: Updates<'py>, f: usize, variant: &str) -> PyResult<AggTuple<'py>> {
    let v = self::variant(variant)?;
    dispatch!(py, updates, |r| core::krum(&r, f, v), |a| Ok(agg_tuple(py, a)))
}

#[pyfunction]
#[pyo3(signature = (updates, f, m, variant="standard"))]
fn multi_krum<'py>(
    py: Python<'py>,
    updates: Updates<'py>,
    f: usize,
    m: usize,
    variant: &str,
) -> PyResult<AggTuple<'py>> {
    let v = self::variant(variant)?;
    dispatch!(py, updates, |r| core::multi_krum(&r, f, m, v), |a| Ok(agg_tuple(py, a)))
}

#[pyfunction]
fn median<'py>(py: Python<'py>, updates: Updates<'py>) -> PyResult<AggTuple<'py>> {
    dispatch!(py, updates, |r| core::median(&r), |a| Ok(agg_tuple(py, a)))
}

#[pyfunction]
fn trimmed_mean<'py>(py: Python<'py>, updates: Updates<'py>, f: usize) -> PyResult<AggTuple<'py>> {
    dispatch!(py, updates, |r| core::trimmed_mean(&r, f), |a| Ok(agg_tuple(py, a)))
}

#[pyfunction]
fn bulyan<'py>(py: Python<'py>, updates: Updates<'py>, f: usize) -> PyResult<AggTuple<'py>> {
    dispatch!(py, updates, |r| core::bulyan(&r, f), |a| Ok(agg_tuple(py, a)))
}

#[pyfunction]
#[pyo3(signature = (updates, weights=None, nu=1e-6, tol=1e-7, max_iter=100))]
fn geometric_median<'py>(
    py: Python<'py>,
    updates: Updates<'py>,
    weights: Option<Vec<f64>>,
    nu: f64,
    tol: f64,
    max_iter: usize,
) -> PyResult<AggTuple<'py>> {
    let p = core::WeiszfeldParams { nu, tol, max_iter };
    dispatch!(py, updates, |r| core::geometric_median(&r, weights.as_deref(), p), |a| Ok(agg_tuple(py, a)))
}

/// The centre arrives as float64 and is cast to the updates' element type.
#[pyfunction]
#[pyo3(signature = (updates, tau, iters=1, center=None))]
fn centered_clipping<'py>(
    py: Python<'py>,
    updates: Updates<'py>,
    tau: f64,
    iters: usize,
    center: Option<Vec<f64>>,
) -> PyResult<AggTuple<'py>> {
    let c32: Option<Vec<f32>> = center.as_ref().map(|c| c.iter().map(|&v| v as f32).collect());
    dispatch!(py, updates, |r| core::centered_clipping(&r, tau, iters, to_t(&c32, &center)), |a| Ok(agg_tuple(py, a)))
}

/// Picks the centre of the element type the rows have.
fn to_t<'c, T: 'static>(c32: &'c Option<Vec<f32>>, c64: &'c Option<Vec<f64>>) -> Option<&'c [T]> {
    let any: Option<&dyn std::any::Any> = if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        c32.as_ref().map(|v| v as &dyn std::any::Any)
    } else {
        c64.as_ref().map(|v| v as &dyn std::any::Any)
    };
    any.and_then(|a| a.downcast_ref::<Vec<T>>()).map(|v| v.as_slice())
}

#[pyfunction]
fn nnm<'py>(py: Python<'py>, updates: Updates<'py>, f: usize) -> PyResult<MixedTuple<'py>> {
    dispatch!(py, updates, |r| core::nnm(&r, f), |m| mixed_tuple(py, m))
}

#[pyfunction]
#[pyo3(signature = (updates, s, seed=0))]
fn bucketing<'py>(py: Python<'py>, updates: Updates<'py>, s: usize, seed: u64) -> PyResult<MixedTuple<'py>> {
    dispatch!(py, updates, |r| core::bucketing(&r, s, seed), |m| mixed_tuple(py, m))
}

type MatrixPair<'py> = (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray2<f64>>);

/// Squared distances through the Gram matrix (n x n) and its error bound.
#[pyfunction]
fn gram_distances<'py>(py: Python<'py>, updates: Updates<'py>) -> PyResult<MatrixPair<'py>> {
    let g = dispatch!(py, updates, |r| core::gram::gram(&r), |g| g);
    let n = g.n;
    let dist: Vec<f64> = (0..n * n).map(|k| g.dist(k / n, k % n)).collect();
    let err: Vec<f64> = (0..n * n).map(|k| g.dist_err(k / n, k % n)).collect();
    Ok((PyArray1::from_vec(py, dist).reshape([n, n])?, PyArray1::from_vec(py, err).reshape([n, n])?))
}

/// The instruction set the kernels use now.
#[pyfunction]
fn simd_path() -> &'static str {
    core::simd::active().name()
}

/// Forces an instruction set ('scalar', 'avx2', 'avx512'); returns the one
/// taken (never above what the CPU has).
#[pyfunction]
fn set_simd_path(name: &str) -> PyResult<&'static str> {
    let isa = core::simd::parse(name)
        .ok_or_else(|| ParameterError::new_err(format!("name: expected 'scalar', 'avx2' or 'avx512', got {name:?}")))?;
    Ok(core::simd::force(isa).name())
}

/// A broken submission rule as `SubmissionRejected`, with `field` and `code` set.
fn rejected(py: Python<'_>, r: validation::Rejection) -> PyErr {
    let err = SubmissionRejected::new_err(r.to_string());
    let value = err.value(py);
    match value.setattr("field", r.field()).and_then(|_| value.setattr("code", r.code())) {
        Ok(()) => err,
        Err(e) => e,
    }
}

fn payload<'a>(values: &'a PyReadonlyArray1<'_, f32>) -> PyResult<&'a [f32]> {
    values.as_slice().map_err(|_| PyTypeError::new_err("values: array must be C-contiguous"))
}

#[pyfunction]
fn payload_hash(py: Python<'_>, values: PyReadonlyArray1<'_, f32>) -> PyResult<Vec<u8>> {
    let v = payload(&values)?;
    Ok(py.detach(|| validation::payload_hash(v)).to_vec())
}

#[pyfunction]
fn l2_norm(py: Python<'_>, values: PyReadonlyArray1<'_, f32>) -> PyResult<f64> {
    let v = payload(&values)?;
    Ok(py.detach(|| validation::l2_norm(v)))
}

/// The spec arrives as a tuple (model_id, dims, max_norm, max_payload_bytes, max_round).
type SpecTuple = (String, u64, f64, u64, Option<u64>);

fn spec_of((model_id, dims, max_norm, max_payload_bytes, max_round): SpecTuple) -> validation::ModelSpec {
    validation::ModelSpec { model_id, dims, max_norm, max_payload_bytes, max_round }
}

#[pyfunction]
fn check_spec(py: Python<'_>, spec: SpecTuple) -> PyResult<()> {
    validation::check_spec(&spec_of(spec)).map_err(|r| rejected(py, r))
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (spec, values, *, model_id, round, dims, norm, example_count, payload_hash))]
fn validate_submission(
    py: Python<'_>,
    spec: SpecTuple,
    values: PyReadonlyArray1<'_, f32>,
    model_id: &str,
    round: u64,
    dims: u64,
    norm: f64,
    example_count: u64,
    payload_hash: &[u8],
) -> PyResult<()> {
    let spec = spec_of(spec);
    let payload_hash: [u8; 32] = payload_hash
        .try_into()
        .map_err(|_| ParameterError::new_err(format!("payload_hash: must be 32 bytes, got {}", payload_hash.len())))?;
    let meta = validation::SubmissionMeta { model_id, round, dims, norm, example_count, payload_hash };
    let v = payload(&values)?;
    py.detach(|| validation::validate_submission(&spec, &meta, v)).map_err(|r| rejected(py, r))
}

#[pyfunction]
fn check_unique(py: Python<'_>, round: u64, already: u64) -> PyResult<()> {
    validation::check_unique(round, already).map_err(|r| rejected(py, r))
}

/// The form of an edge proof (`zerotrustml_core::validation::check_proof`), the rule the zome applies.
#[pyfunction]
#[pyo3(signature = (*, loss_before, loss_after, holdout_size, lr, nonce_len, signature_len))]
fn check_proof(
    py: Python<'_>,
    loss_before: f64,
    loss_after: f64,
    holdout_size: u64,
    lr: f64,
    nonce_len: usize,
    signature_len: usize,
) -> PyResult<()> {
    let form = validation::ProofForm { loss_before, loss_after, holdout_size, lr, nonce_len, signature_len };
    validation::check_proof(&form).map_err(|r| rejected(py, r))
}

/// The DHT's committee lottery (`zerotrustml_core::committee`), so Python checks votes as validators do.
#[pyfunction]
fn is_committee_member(seed: &[u8], round: u64, key: &[u8], rate: f64) -> PyResult<bool> {
    core::committee::check_committee_rate(rate).map_err(|e| ParameterError::new_err(format!("rate: {e}")))?;
    if key.len() != 32 {
        return Err(ParameterError::new_err(format!("key: an Ed25519 public key is 32 bytes, got {}", key.len())));
    }
    Ok(core::committee::is_committee_member(seed, round, key, rate))
}

/// The core's precondition of the rule named `rule` on `n` updates (`check_rule_precondition`).
#[pyfunction]
fn check_precondition(rule: &str, n: usize, f: usize) -> PyResult<()> {
    Ok(core::aggregate::check_rule_precondition(rule, n, f).map_err(PyCoreError)?)
}

/// The bytes a round's committee beacon signs (`zerotrustml_core::committee::beacon_message`).
#[pyfunction]
fn beacon_message(committee_seed: &[u8], round: u64) -> Vec<u8> {
    core::committee::beacon_message(committee_seed, round)
}

/// The lottery seed of a round given its beacon (`zerotrustml_core::committee::round_seed`; empty: none).
#[pyfunction]
fn committee_round_seed(committee_seed: &[u8], beacon: &[u8]) -> PyResult<Vec<u8>> {
    if !(beacon.is_empty() || beacon.len() == core::committee::BEACON_BYTES) {
        return Err(ParameterError::new_err(format!(
            "beacon: must be empty or {} bytes, got {}",
            core::committee::BEACON_BYTES,
            beacon.len()
        )));
    }
    Ok(core::committee::round_seed(committee_seed, beacon))
}

/// Example-count weights of the mean, each capped at `cap` times the median (`zerotrustml_core::examples`).
#[pyfunction]
fn capped_example_weights(counts: Vec<u64>, cap: f64) -> PyResult<Vec<f64>> {
    core::examples::check_example_cap(cap).map_err(|e| ParameterError::new_err(format!("cap: {e}")))?;
    Ok(core::examples::capped_example_weights(&counts, cap))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_function(wrap_pyfunction!(mean, m)?)?;
    m.add_function(wrap_pyfunction!(krum, m)?)?;
    m.add_function(wrap_pyfunction!(multi_krum, m)?)?;
    m.add_function(wrap_pyfunction!(median, m)?)?;
    m.add_function(wrap_pyfunction!(trimmed_mean, m)?)?;
    m.add_function(wrap_pyfunction!(bulyan, m)?)?;
    m.add_function(wrap_pyfunction!(geometric_median, m)?)?;
    m.add_function(wrap_pyfunction!(centered_clipping, m)?)?;
    m.add_function(wrap_pyfunction!(nnm, m)?)?;
    m.add_function(wrap_pyfunction!(bucketing, m)?)?;
    m.add_function(wrap_pyfunction!(gram_distances, m)?)?;
    m.add_function(wrap_pyfunction!(simd_path, m)?)?;
    m.add_function(wrap_pyfunction!(set_simd_path, m)?)?;
    m.add_function(wrap_pyfunction!(payload_hash, m)?)?;
    m.add_function(wrap_pyfunction!(l2_norm, m)?)?;
    m.add_function(wrap_pyfunction!(check_spec, m)?)?;
    m.add_function(wrap_pyfunction!(validate_submission, m)?)?;
    m.add_function(wrap_pyfunction!(check_unique, m)?)?;
    m.add_function(wrap_pyfunction!(check_proof, m)?)?;
    m.add_function(wrap_pyfunction!(beacon_message, m)?)?;
    m.add_function(wrap_pyfunction!(check_precondition, m)?)?;
    m.add_function(wrap_pyfunction!(committee_round_seed, m)?)?;
    m.add_function(wrap_pyfunction!(is_committee_member, m)?)?;
    m.add_function(wrap_pyfunction!(capped_example_weights, m)?)?;
    m.add("DEFAULT_EXAMPLE_CAP", core::examples::DEFAULT_EXAMPLE_CAP)?;
    m.add("NORM_RTOL", validation::NORM_RTOL)?;
    m.add("ValidationError", py.get_type::<ValidationError>())?;
    m.add("EmptyInputError", py.get_type::<EmptyInputError>())?;
    m.add("ShapeError", py.get_type::<ShapeError>())?;
    m.add("NonFiniteError", py.get_type::<NonFiniteError>())?;
    m.add("PreconditionError", py.get_type::<PreconditionError>())?;
    m.add("ParameterError", py.get_type::<ParameterError>())?;
    m.add("SubmissionRejected", py.get_type::<SubmissionRejected>())?;
    Ok(())
}
