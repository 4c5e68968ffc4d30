// Reference embeddings computed by face-api.js itself (its FaceRecognitionNet code from
// dist/face-api.node-wasm.js, running on @tensorflow/tfjs@4.22.0's CPU backend).
// usage: NODE_PATH=<dir with @tensorflow/tfjs + tfjs-backend-wasm> \
//        node faceapi_embed.mjs <face-api package dir> <in.f32> <out.f32>
//   in.f32: N x 150 x 150 x 3 float32 RGB 0..255 (little endian); out.f32: N x 128 float32
import fs from 'fs';
import path from 'path';
import { createRequire } from 'module';

const require = createRequire(import.meta.url);
const [pkgDir, inPath, outPath] = process.argv.slice(2);
const faceapi = require(path.resolve(pkgDir, 'dist', 'face-api.node-wasm.js'));
const tf = faceapi.tf;
await tf.setBackend('cpu');
await tf.ready();
const modelDir = path.join(pkgDir, 'model');
const manifest = JSON.parse(fs.readFileSync(path.join(modelDir, 'face_recognition_model-weights_manifest.json')));
const specs = [];
const bufs = [];
for (const g of manifest) {
  for (const p of g.paths) bufs.push(fs.readFileSync(path.join(modelDir, p)));
  specs.push(...g.weights);
}
const all = Buffer.concat(bufs);
const ab = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
const weightMap = tf.io.decodeWeights(ab, specs); // dequantizes uint8: q * scale + min
const net = new faceapi.FaceRecognitionNet();
net.loadFromWeightMap(weightMap);
const raw = fs.readFileSync(inPath);
const x = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
const n = x.length / (150 * 150 * 3);
const out = new Float32Array(n * 128);
for (let i = 0; i < n; i++) {
  const t = tf.tensor3d(x.subarray(i * 67500, (i + 1) * 67500), [150, 150, 3], 'float32');
  const d = await net.computeFaceDescriptor(t);
  out.set(d, i * 128);
  t.dispose();
}
fs.writeFileSync(outPath, Buffer.from(out.buffer));
console.log(JSON.stringify({ backend: tf.getBackend(), tfjs: tf.version_core, faces: n }));
