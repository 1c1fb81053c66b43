// Builds small Keras models in TensorFlow.js (layers format), saves them as test fixtures for the
// C# TfjsModel loader and records reference outputs computed by TF.js 4.22.0 (pure JS CPU backend).
//
// Usage (from tools/tfjs):  npm install   then   node make-fixtures.js
// Writes tests/TransferLearning.Core.Tests/TestData/tfjs/<name>/{model.json, weights.bin, input.bin, output.bin, meta.json}
// and tests/TransferLearning.Core.Tests/TestData/tfjs/teachable-machine-reference.json (needs ../shared/models).
// input.bin/output.bin are raw little-endian float32 in Keras (NHWC) order; meta.json holds their shapes.
'use strict';
const tf = require('@tensorflow/tfjs');
const fs = require('fs');
const path = require('path');

const repoRoot = path.resolve(__dirname, '..', '..');
const outRoot = path.join(repoRoot, 'tests', 'TransferLearning.Core.Tests', 'TestData', 'tfjs');

// Deterministic pseudo-random numbers (no dependence on TF.js's RNG).
function lcg(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function randomTensor(shape, seed, lo = -1, hi = 1) {
  const rnd = lcg(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = lo + (hi - lo) * rnd();
  return tf.tensor(v, shape);
}

// Replaces every weight with deterministic values; BatchNorm variances stay positive.
function setDeterministicWeights(model, seed) {
  let k = seed;
  for (const layer of allLayers(model)) {
    const ws = layer.getWeights();
    if (ws.length === 0) continue;
    const names = layer.weights.map(w => w.originalName || w.name);
    const fresh = ws.map((w, i) => {
      const n = names[i];
      k += 1;
      if (n.endsWith('moving_variance')) return randomTensor(w.shape, k, 0.5, 1.5);
      if (n.endsWith('gamma')) return randomTensor(w.shape, k, 0.6, 1.4);
      const fanIn = w.shape.length > 1 ? w.shape.slice(0, -1).reduce((a, b) => a * b, 1) : 4;
      const s = Math.min(1, 1.7 / Math.sqrt(fanIn));
      return randomTensor(w.shape, k, -s, s);
    });
    layer.setWeights(fresh);
  }
}

function allLayers(model) {
  const out = [];
  for (const l of model.layers) {
    if (l.layers) out.push(...allLayers(l)); else out.push(l);
  }
  return out;
}

async function saveArtifacts(model) {
  let artifacts;
  await model.save(tf.io.withSaveHandler(async a => { artifacts = a; return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }; }));
  return artifacts;
}

function writeF32(file, data) {
  const f = Float32Array.from(data);
  fs.writeFileSync(file, Buffer.from(f.buffer, f.byteOffset, f.byteLength));
}

function writeModelJson(dir, artifacts, mutate) {
  const json = {
    format: 'layers-model',
    generatedBy: 'TensorFlow.js tfjs-layers v4.22.0',
    convertedBy: null,
    modelTopology: artifacts.modelTopology,
    weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }],
  };
  if (mutate) mutate(json);
  fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));
}

async function fixture(name, model, inputShape, options = {}) {
  const dir = path.join(outRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  setDeterministicWeights(model, name.length * 1000 + 17);
  const artifacts = await saveArtifacts(model);
  let runModel = model;
  let weightData = Buffer.from(artifacts.weightData);
  if (options.quantize) {
    // TF.js cannot write quantized weights; craft uint8 quantization exactly as the converter does
    // (value = q * scale + min) and let TF.js load and run the dequantized model as the reference.
    const src = new Float32Array(artifacts.weightData);
    const parts = [];
    let off = 0;
    for (const spec of artifacts.weightSpecs) {
      const n = spec.shape.reduce((a, b) => a * b, 1);
      const vals = src.subarray(off, off + n);
      off += n;
      let min = Math.min(...vals), max = Math.max(...vals);
      if (max === min) max = min + 1;
      const scale = (max - min) / 255;
      const q = new Uint8Array(n);
      for (let i = 0; i < n; i++) q[i] = Math.round((vals[i] - min) / scale);
      spec.quantization = { scale, min, dtype: 'uint8', original_dtype: 'float32' };
      parts.push(Buffer.from(q.buffer));
    }
    weightData = Buffer.concat(parts);
    const ab = weightData.buffer.slice(weightData.byteOffset, weightData.byteOffset + weightData.byteLength);
    runModel = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: artifacts.modelTopology, weightSpecs: artifacts.weightSpecs, weightData: ab }));
  }
  writeModelJson(dir, artifacts, options.mutate);
  fs.writeFileSync(path.join(dir, 'weights.bin'), weightData);
  const x = randomTensor(inputShape, 4242 + name.length);
  const y = runModel.predict(x);
  writeF32(path.join(dir, 'input.bin'), x.dataSync());
  writeF32(path.join(dir, 'output.bin'), y.dataSync());
  const meta = { inputShape, outputShape: y.shape, featureLayer: options.featureLayer || null };
  if (options.training) {
    // Training-mode forward: BatchNormalization normalises with the batch's statistics.
    const yt = runModel.apply(x, { training: true });
    writeF32(path.join(dir, 'train-output.bin'), yt.dataSync());
    meta.trainOutput = true;
  }
  if (options.featureLayer) {
    const sub = tf.model({ inputs: runModel.inputs, outputs: runModel.getLayer(options.featureLayer).output });
    const f = sub.predict(x);
    writeF32(path.join(dir, 'features.bin'), f.dataSync());
    meta.featureShape = f.shape;
  }
  fs.writeFileSync(path.join(dir, 'meta.json'), JSON.stringify(meta));
  console.log(`${name}: in ${inputShape} out ${y.shape} weights ${weightData.length} B`);
}

const L = tf.layers;

// Conv2D: same/valid, stride 1/2/3, odd and even sizes, non-square input, bias/no bias, dilation, activations.
function convSameOdd() {
  const input = tf.input({ shape: [9, 11, 3], name: 'in_odd' });
  let h = L.conv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', useBias: true, activation: 'relu', name: 'c_s2_same' }).apply(input);
  h = L.conv2d({ filters: 5, kernelSize: 3, strides: 1, padding: 'same', dilationRate: 2, useBias: false, name: 'c_dil2_same' }).apply(h);
  h = L.conv2d({ filters: 6, kernelSize: [2, 3], strides: 2, padding: 'valid', activation: 'sigmoid', name: 'c_s2_valid' }).apply(h);
  return tf.model({ inputs: input, outputs: h });
}

function convSameEven() {
  const input = tf.input({ shape: [8, 10, 3], name: 'in_even' });
  let h = L.conv2d({ filters: 4, kernelSize: 3, strides: 2, padding: 'same', name: 'e_k3_s2' }).apply(input);
  h = L.conv2d({ filters: 4, kernelSize: 4, strides: 1, padding: 'same', activation: 'tanh', name: 'e_k4_s1' }).apply(h);
  const h2 = L.conv2d({ filters: 3, kernelSize: 5, strides: 3, padding: 'same', activation: 'elu', name: 'e_k5_s3' }).apply(input);
  const h3 = L.conv2d({ filters: 3, kernelSize: 2, strides: 2, padding: 'same', activation: 'softplus', name: 'e_k2_s2' }).apply(h);
  const f = L.concatenate({ name: 'e_cat' }).apply([L.flatten({ name: 'e_flat1' }).apply(h2), L.flatten({ name: 'e_flat2' }).apply(h3)]);
  return tf.model({ inputs: input, outputs: f });
}

// DepthwiseConv2D with multiplier 2, SeparableConv2D same (dilated, multiplier 2)/valid with and without bias.
function depthwise() {
  const input = tf.input({ shape: [10, 9, 4], name: 'in_dw' });
  let h = L.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'same', depthMultiplier: 2, useBias: true, activation: 'relu6', name: 'dw_m2_s2' }).apply(input);
  // tfjs-layers 4.22 ignores dilation_rate in DepthwiseConv2D (TODO in its source), so no dilation here.
  h = L.depthwiseConv2d({ kernelSize: 2, strides: 1, padding: 'valid', useBias: false, name: 'dw_valid' }).apply(h);
  // tfjs-layers omits depth_multiplier from SeparableConv2D's saved config; the loader takes it from the kernel shape.
  h = L.separableConv2d({ filters: 6, kernelSize: 3, strides: 1, padding: 'same', depthMultiplier: 2, dilationRate: 2, useBias: true, activation: 'swish', name: 'sep_same' }).apply(h);
  h = L.separableConv2d({ filters: 5, kernelSize: 2, strides: 2, padding: 'valid', useBias: false, name: 'sep_valid' }).apply(h);
  return tf.model({ inputs: input, outputs: h });
}

// BatchNormalization (center/scale flags), ReLU(max_value), activations, LeakyReLU, Softmax, pooling.
function bnAct() {
  const input = tf.input({ shape: [7, 6, 3], name: 'in_bn' });
  let h = L.conv2d({ filters: 8, kernelSize: 3, padding: 'same', name: 'b_conv' }).apply(input);
  h = L.batchNormalization({ epsilon: 1e-3, momentum: 0.99, name: 'b_bn1' }).apply(h);
  h = L.reLU({ maxValue: 0.8, name: 'b_relu' }).apply(h);
  h = L.batchNormalization({ center: false, epsilon: 0.01, name: 'b_bn_nocenter' }).apply(h);
  const a = L.activation({ activation: 'hardSigmoid', name: 'b_hsig' }).apply(h);
  const b = L.batchNormalization({ scale: false, name: 'b_bn_noscale' }).apply(h);
  const c = L.leakyReLU({ alpha: 0.2, name: 'b_leaky' }).apply(b);
  let m = L.multiply({ name: 'b_mul' }).apply([a, c]);
  const avgSame = L.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same', name: 'b_avg_same' }).apply(m);
  const maxSame = L.maxPooling2d({ poolSize: 2, strides: 2, padding: 'same', name: 'b_max_same' }).apply(m);
  const avgValid = L.averagePooling2d({ poolSize: 2, strides: 1, padding: 'valid', name: 'b_avg_valid' }).apply(m);
  const maxValid = L.maxPooling2d({ poolSize: 3, strides: 2, padding: 'valid', name: 'b_max_valid' }).apply(m);
  const s = L.add({ name: 'b_add' }).apply([avgSame, maxSame]);
  const g1 = L.globalAveragePooling2d({ name: 'b_gap1' }).apply(s);
  const g2 = L.flatten({ name: 'b_flat_avg' }).apply(avgValid);
  const g3 = L.flatten({ name: 'b_flat_max' }).apply(maxValid);
  let out = L.concatenate({ name: 'b_cat', axis: -1 }).apply([g1, g2, g3]);
  out = L.activation({ activation: 'softmax', name: 'b_softmax' }).apply(out);
  return tf.model({ inputs: input, outputs: out });
}

// Channel concatenation and Add/Multiply on feature maps, then Flatten + Dense + Dropout + Reshape.
function mergeReshape() {
  const input = tf.input({ shape: [6, 5, 2], name: 'in_merge' });
  const a = L.conv2d({ filters: 3, kernelSize: 1, name: 'm_a' }).apply(input);
  const b = L.conv2d({ filters: 3, kernelSize: 3, padding: 'same', activation: 'relu', name: 'm_b' }).apply(input);
  const cat = L.concatenate({ axis: 3, name: 'm_cat_ch' }).apply([a, b, input]);
  const catH = L.concatenate({ axis: 1, name: 'm_cat_h' }).apply([a, b]);
  const z = L.zeroPadding2d({ padding: [[1, 2], [0, 1]], name: 'm_zpad' }).apply(cat);
  let f = L.flatten({ name: 'm_flat' }).apply(z);
  f = L.dense({ units: 24, activation: 'relu', name: 'm_dense1' }).apply(f);
  f = L.dropout({ rate: 0.5, name: 'm_drop' }).apply(f);
  let r = L.reshape({ targetShape: [2, 4, 3], name: 'm_reshape' }).apply(f);
  r = L.conv2d({ filters: 2, kernelSize: 2, padding: 'same', name: 'm_conv_r' }).apply(r);
  const f2 = L.flatten({ name: 'm_flat2' }).apply(r);
  const f3 = L.globalAveragePooling2d({ name: 'm_gap_h' }).apply(catH);
  const out = L.concatenate({ name: 'm_cat_out' }).apply([f2, f3]);
  const y = L.dense({ units: 5, activation: 'softmax', useBias: false, name: 'm_head' }).apply(out);
  return tf.model({ inputs: input, outputs: y });
}

// A Sequential inside a functional model, a functional model inside a Sequential, and a
// GlobalAveragePooling2D feature followed by a Dense head (the Teachable Machine shape).
function nested() {
  const innerSeq = tf.sequential({ name: 'n_inner_seq' });
  innerSeq.add(L.conv2d({ inputShape: [8, 8, 3], filters: 4, kernelSize: 3, strides: 2, padding: 'same', name: 'n_seq_conv' }));
  innerSeq.add(L.batchNormalization({ name: 'n_seq_bn' }));
  innerSeq.add(L.reLU({ maxValue: 6, name: 'n_seq_relu' }));

  const fin = tf.input({ shape: [8, 8, 3], name: 'n_in' });
  const t = innerSeq.apply(fin);
  const skip = L.conv2d({ filters: 4, kernelSize: 1, strides: 2, name: 'n_skip' }).apply(fin);
  const sum = L.add({ name: 'n_add' }).apply([t, skip]);
  const base = tf.model({ inputs: fin, outputs: sum, name: 'n_base' });

  const features = tf.sequential({ name: 'n_features' });
  features.add(base);
  features.add(L.globalAveragePooling2d({ name: 'n_gap' }));
  const head = tf.sequential({ name: 'n_head' });
  head.add(L.dense({ inputShape: [4], units: 6, activation: 'relu', name: 'n_dense1' }));
  head.add(L.dense({ units: 3, activation: 'softmax', useBias: false, name: 'n_dense2' }));
  const outer = tf.sequential({ name: 'n_outer' });
  outer.add(features);
  outer.add(head);
  return outer;
}

// Shared layers: one Conv2D and one nested functional model each called twice (several inbound nodes).
function reusedLayers() {
  const subIn = tf.input({ shape: [6, 6, 4], name: 'sh_sub_in' });
  const subOut = L.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'tanh', name: 'sh_sub_conv' }).apply(subIn);
  const sub = tf.model({ inputs: subIn, outputs: subOut, name: 'sh_sub' });
  const input = tf.input({ shape: [6, 6, 4], name: 'sh_in' });
  const conv = L.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'sh_conv' });
  const a = conv.apply(input);
  const b = conv.apply(L.reLU({ name: 'sh_relu' }).apply(a));
  const c = sub.apply(b);
  const d = sub.apply(L.add({ name: 'sh_add' }).apply([a, c]));
  const out = L.globalAveragePooling2d({ name: 'sh_gap' }).apply(L.multiply({ name: 'sh_mul' }).apply([c, d]));
  return tf.model({ inputs: input, outputs: out });
}

// Views: a linear Activation, a Reshape and a Dropout pass their input through (views in TorchSharp); a ReLU after
// them must not run in place while the original value is still needed.
function views() {
  const input = tf.input({ shape: [4, 4, 3], name: 'v_in' });
  const conv = L.conv2d({ filters: 3, kernelSize: 1, name: 'v_conv' }).apply(input);
  const lin = L.activation({ activation: 'linear', name: 'v_linear' }).apply(conv);
  const r1 = L.reLU({ name: 'v_relu1' }).apply(lin);
  const flat = L.flatten({ name: 'v_flat' }).apply(L.add({ name: 'v_add1' }).apply([conv, r1]));
  const dense = L.dense({ units: 6, name: 'v_dense' }).apply(flat);
  const resh = L.reshape({ targetShape: [6], name: 'v_reshape' }).apply(dense);
  const drop = L.dropout({ rate: 0.3, name: 'v_drop' }).apply(resh);
  const r2 = L.reLU({ maxValue: 6, name: 'v_relu2' }).apply(drop);
  const r3 = L.activation({ activation: 'relu', name: 'v_relu3' }).apply(resh);
  const out = L.concatenate({ name: 'v_cat' }).apply([dense, r2, r3]);
  return tf.model({ inputs: input, outputs: out });
}

// Plain Sequential with Flatten + Dense (also written in the old tfjs 1.x style without "format" and
// with the Sequential config as a bare list of layers).
function seqFlatten() {
  const m = tf.sequential({ name: 's_seq' });
  m.add(L.conv2d({ inputShape: [5, 6, 2], filters: 3, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu', name: 's_conv' }));
  m.add(L.flatten({ name: 's_flat' }));
  m.add(L.dense({ units: 4, activation: 'tanh', name: 's_dense' }));
  return m;
}

function oldStyle(json) {
  delete json.format;
  delete json.generatedBy;
  delete json.convertedBy;
  json.modelTopology.keras_version = 'tfjs-layers 1.3.1';
  json.modelTopology.config = json.modelTopology.config.layers;
}

async function teachableMachineReference() {
  const dir = path.resolve(repoRoot, '..', 'shared', 'models', 'teachable-machine-mobilenetv2');
  if (!fs.existsSync(path.join(dir, 'model.json'))) {
    console.log(`skip Teachable Machine reference: ${dir} not found`);
    return;
  }
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
  const w = fs.readFileSync(path.join(dir, 'weights.bin'));
  const model = await tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest[0].weights,
    weightData: w.buffer.slice(w.byteOffset, w.byteOffset + w.byteLength),
  }));
  const featureModel = model.layers[0]; // Sequential [MobileNetV2 functional, GlobalAveragePooling2D]
  const n = 224 * 224 * 3;
  const inputs = {
    modular: i => ((i * 7919) % 256) / 127.5 - 1,
    sine: i => Math.sin(i * 0.001) * 0.9,
  };
  const result = { source: 'TensorFlow.js 4.22.0 (tfjs-backend-cpu), node ' + process.version, inputs: {} };
  for (const [key, fn] of Object.entries(inputs)) {
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) v[i] = fn(i);
    const x = tf.tensor(v, [1, 224, 224, 3]);
    const f = Array.from(featureModel.predict(x).dataSync());
    const p = Array.from(model.predict(x).dataSync());
    result.inputs[key] = { features: f, probabilities: p };
    console.log(`TM ${key}: features[0..9] ${f.slice(0, 10).map(a => a.toPrecision(8)).join(', ')} max ${Math.max(...f)}`);
  }
  result.inputs.modular.formula = 'x[i] = ((i * 7919) % 256) / 127.5 - 1 over flattened 1x224x224x3 NHWC';
  result.inputs.sine.formula = 'x[i] = Math.sin(i * 0.001) * 0.9 (float32) over flattened 1x224x224x3 NHWC';
  fs.writeFileSync(path.join(outRoot, 'teachable-machine-reference.json'), JSON.stringify(result));
}

async function main() {
  await tf.setBackend('cpu');
  fs.mkdirSync(outRoot, { recursive: true });
  await fixture('conv_same_odd', convSameOdd(), [2, 9, 11, 3]);
  await fixture('conv_same_even', convSameEven(), [2, 8, 10, 3]);
  await fixture('depthwise', depthwise(), [2, 10, 9, 4]);
  await fixture('bn_act', bnAct(), [2, 7, 6, 3]); // no training-mode reference: tfjs 4.22 crashes in training BN without center/scale
  await fixture('merge_reshape', mergeReshape(), [2, 6, 5, 2], { featureLayer: 'm_cat_out' });
  await fixture('nested', nested(), [2, 8, 8, 3], { training: true });
  await fixture('reused_layers', reusedLayers(), [2, 6, 6, 4]);
  await fixture('views', views(), [2, 4, 4, 3]);
  await fixture('seq_flatten_old', seqFlatten(), [2, 5, 6, 2], { mutate: oldStyle });
  await fixture('quantized_uint8', seqFlatten(), [2, 5, 6, 2], { quantize: true });
  await teachableMachineReference();
}

main().catch(e => { console.error(e); process.exit(1); });
