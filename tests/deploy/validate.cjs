'use strict';
// The checks of tests/deploy/validate.sh on rendered manifests and on the Dockerfiles.
// validate.sh renders (kubectl kustomize, helm template) and passes the files here:
//
//   node validate.cjs --root REPO --npm build/npm --build-dir BUILD
//     --render NAME=FILE ...      rendered manifests (each checked on its own)
//     --same NAME=NAME ...        pairs that must hold the same objects
//     --binary NAME=PATH ...      castor-engine, castor-control, castorctl, castor-csi
//     --etcd PATH                 an etcd binary, for the etcd StatefulSet's flags
//
// Prints one line per failed check, a summary per group, and "N passed, M failed".
// Exit status 1 when any check failed.

const fs = require('fs');
const path = require('path');
const cp = require('child_process');
const { createRequire } = require('module');

// ---------------------------------------------------------------- arguments
const opt = { render: [], same: [], binary: {} };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === '--render') opt.render.push(v.split('='));
    else if (k === '--same') opt.same.push(v.split('='));
    else if (k === '--binary') { const [n, p] = v.split('='); opt.binary[n] = p; }
    else opt[k.replace(/^--/, '').replace(/-(\w)/g, (_, c) => c.toUpperCase())] = v;
  }
  for (const k of ['root', 'npm', 'buildDir', 'etcd']) {
    if (!opt[k]) throw new Error(`--${k} is required`);
  }
}
const npmRequire = createRequire(path.join(opt.npm, 'package.json'));
const YAML = npmRequire('yaml');
const modelsDir = path.dirname(npmRequire.resolve('kubernetes-models/package.json'));

// ---------------------------------------------------------------- reporting
let passed = 0;
let failed = 0;
let groupPassed = 0;
let groupFailed = 0;
function ok(cond, what) {
  if (cond) { passed++; groupPassed++; } else { failed++; groupFailed++; console.log(`  FAIL ${what}`); }
  return !!cond;
}
function group(name, fn) {
  const t0 = Date.now();
  groupPassed = 0; groupFailed = 0;
  try { fn(); } catch (e) { ok(false, `${name}: ${e.stack}`); }
  if (process.env.DEPLOY_TEST_TIMES) console.log(`     (${Date.now() - t0} ms)`);
  console.log(`${groupFailed ? 'FAIL' : 'ok  '} ${name}: ${groupPassed} checks passed` +
              (groupFailed ? `, ${groupFailed} failed` : ''));
}
const id = (o) => `${o.kind}/${o.metadata && o.metadata.namespace ? o.metadata.namespace + '/' : ''}${o.metadata && o.metadata.name}`;

// ---------------------------------------------------------------- what may be rendered
// kind -> [apiVersion, namespaced, allowed top-level keys]
const KINDS = {
  Namespace: ['v1', false, ['spec']],
  ServiceAccount: ['v1', true, ['automountServiceAccountToken', 'imagePullSecrets', 'secrets']],
  PersistentVolumeClaim: ['v1', true, ['spec']],
  Service: ['v1', true, ['spec']],
  Deployment: ['apps/v1', true, ['spec']],
  DaemonSet: ['apps/v1', true, ['spec']],
  StatefulSet: ['apps/v1', true, ['spec']],
  CSIDriver: ['storage.k8s.io/v1', false, ['spec']],
  StorageClass: ['storage.k8s.io/v1', false,
    ['provisioner', 'parameters', 'reclaimPolicy', 'allowVolumeExpansion', 'volumeBindingMode',
     'mountOptions', 'allowedTopologies']],
  ClusterRole: ['rbac.authorization.k8s.io/v1', false, ['rules', 'aggregationRule']],
  ClusterRoleBinding: ['rbac.authorization.k8s.io/v1', false, ['roleRef', 'subjects']],
  Role: ['rbac.authorization.k8s.io/v1', true, ['rules']],
  RoleBinding: ['rbac.authorization.k8s.io/v1', true, ['roleRef', 'subjects']],
};
const WORKLOADS = ['Deployment', 'DaemonSet', 'StatefulSet'];
const DRIVER = 'io.castor.csi';
// The image of each Castor binary, and the Dockerfile that makes it.
const IMAGES = {
  'castor-engine': { re: /(^|\/)castor-engine(:|$)/, dockerfile: 'Dockerfile.engine' },
  'castor-control': { re: /(^|\/)castor-control(:|$)/, dockerfile: 'Dockerfile.control' },
  'castor-csi': { re: /(^|\/)castor-csi(:|$)/, dockerfile: 'Dockerfile.csi' },
};
const SIDECARS = {
  provisioner: /^registry\.k8s\.io\/sig-storage\/csi-provisioner:v\d+\.\d+\.\d+$/,
  attacher: /^registry\.k8s\.io\/sig-storage\/csi-attacher:v\d+\.\d+\.\d+$/,
  resizer: /^registry\.k8s\.io\/sig-storage\/csi-resizer:v\d+\.\d+\.\d+$/,
  livenessprobe: /^registry\.k8s\.io\/sig-storage\/livenessprobe:v\d+\.\d+\.\d+$/,
  registrar: /^registry\.k8s\.io\/sig-storage\/csi-node-driver-registrar:v\d+\.\d+\.\d+$/,
};
const sidecarOf = (image) => Object.keys(SIDECARS).find((k) => SIDECARS[k].test(image));
const castorBinaryOf = (image) => Object.keys(IMAGES).find((k) => IMAGES[k].re.test(image));

// ---------------------------------------------------------------- binaries' flags
// CLI11's --help: "  --name TYPE   description" (TYPE absent for a flag without value;
// "TEXT:{a,b}" lists the choices, "UINT:UINT in [1 - 8]" a range).
function parseHelp(text) {
  const flags = new Map();
  for (const line of text.split('\n')) {
    const m = line.match(/^\s+(?:-\w,)?(--[\w-]+)(?: ([A-Z][^\s]*(?: (?!\s)[^\s]+)*?))?(?:\s{2,}|$)/);
    if (!m) continue;
    const type = m[2] || null;
    const spec = { takesValue: !!type, type, choices: null, range: null };
    const c = type && type.match(/:\{([^}]*)\}/);
    if (c) spec.choices = c[1].split(',');
    const r = type && type.match(/in \[(\d+) - (\d+)\]/);
    if (r) spec.range = [Number(r[1]), Number(r[2])];
    flags.set(m[1], spec);
  }
  return flags;
}
function helpOf(binary) {
  const r = cp.spawnSync(binary, ['--help'], { encoding: 'utf8', timeout: 20000 });
  if (r.error) throw new Error(`${binary} --help: ${r.error.message}`);
  return (r.stdout || '') + (r.stderr || '');
}
const castorFlags = {};
function loadFlags() {
  for (const name of ['castor-engine', 'castor-control']) {
    const bin = opt.binary[name];
    if (!ok(bin && fs.existsSync(bin), `${name} binary given and present (${bin})`)) continue;
    castorFlags[name] = parseHelp(helpOf(bin));
    ok(castorFlags[name].size > 5, `${name} --help lists its flags (${castorFlags[name].size})`);
  }
  {
    const bin = opt.binary['castor-csi'];
    if (ok(bin && fs.existsSync(bin), `castor-csi binary present (${bin})`)) {
      castorFlags['castor-csi'] = parseHelp(helpOf(bin));
    }
  }
  ok(castorFlags['castor-csi'] && castorFlags['castor-csi'].size > 5, 'castor-csi flags known');
  // Debian's etcd is 3.4 (etcd --help lists "--flag 'default'"); the image runs 3.5: the
  // flags used here are in both.
  const etcdHelp = helpOf(opt.etcd);
  castorFlags.etcd = new Map();
  for (const m of etcdHelp.matchAll(/^\s+(--[\w-]+)/gm)) castorFlags.etcd.set(m[1], { takesValue: true });
  ok(castorFlags.etcd.has('--initial-cluster'), `${opt.etcd} --help lists its flags`);
}

// Parses a container's args against a binary's flags: name -> [values].
function parseArgs(args, flags, where) {
  const out = new Map();
  for (let i = 0; i < args.length; i++) {
    const a = String(args[i]);
    if (!ok(a.startsWith('--'), `${where}: argument '${a}' is a --flag`)) continue;
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    let value = eq > 0 ? a.slice(eq + 1) : undefined;
    const spec = flags.get(name);
    if (!ok(spec, `${where}: flag ${name} exists in the binary's --help`)) continue;
    if (spec.takesValue && value === undefined) {
      value = args[++i] === undefined ? undefined : String(args[i]);
      ok(value !== undefined && !value.startsWith('--'), `${where}: ${name} has a value`);
    } else if (!spec.takesValue) {
      ok(value === undefined || ['true', 'false'].includes(value), `${where}: ${name} takes no value`);
    }
    if (value !== undefined && !value.includes('$(')) {
      if (spec.choices) ok(spec.choices.includes(value), `${where}: ${name} ${value} is one of ${spec.choices}`);
      if (spec.range) {
        const n = Number(value);
        ok(Number.isInteger(n) && n >= spec.range[0] && n <= spec.range[1],
           `${where}: ${name} ${value} in [${spec.range}]`);
      }
    }
    if (!out.has(name)) out.set(name, []);
    out.get(name).push(value);
  }
  return out;
}
// Sidecars (Go flag package): --name=value or --name; returns name -> value.
function goFlags(args) {
  const out = new Map();
  for (const a of args || []) {
    const m = String(a).match(/^--?([\w-]+)(?:=(.*))?$/);
    if (m) out.set(m[1], m[2] === undefined ? true : m[2]);
  }
  return out;
}

// ---------------------------------------------------------------- schema validation
const schemaCache = new Map();
function modelFor(apiVersion, kind) {
  const file = path.join(modelsDir, apiVersion, `${kind}.js`); // v1/Service.js, apps/v1/DaemonSet.js
  if (!fs.existsSync(file)) return null;
  if (!schemaCache.has(file)) {
    const Model = npmRequire(file)[kind];
    const schemaName = fs.readFileSync(file, 'utf8').match(/_schemas\/(\w+)\.js/)[1];
    const validate = npmRequire(path.join(modelsDir, '_schemas', `${schemaName}.js`)).validate;
    schemaCache.set(file, { Model, validate });
  }
  return schemaCache.get(file);
}
// kubernetes-models' validators check types and required fields but accept any unknown
// field. Run the same compiled validator over a Proxy of the object that records which
// keys the validator asked for: a key it never asked for is not in the schema (objects
// whose keys it enumerates are maps, such as labels, and take any key).
function unknownFields(validate, obj) {
  const seen = [];
  function wrap(v, p) {
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) return v.map((x, i) => wrap(x, `${p}/${i}`));
    const rec = { path: p, obj: v, asked: new Set(), enumerated: false };
    seen.push(rec);
    const copy = {};
    for (const [k, x] of Object.entries(v)) copy[k] = wrap(x, `${p}/${k}`);
    return new Proxy(copy, {
      get(t, k) { if (typeof k === 'string') rec.asked.add(k); return Reflect.get(t, k); },
      has(t, k) { if (typeof k === 'string') rec.asked.add(k); return Reflect.has(t, k); },
      ownKeys(t) { rec.enumerated = true; return Reflect.ownKeys(t); },
      getOwnPropertyDescriptor(t, k) { rec.enumerated = true; return Reflect.getOwnPropertyDescriptor(t, k); },
    });
  }
  validate(wrap(obj, ''));
  const unknown = [];
  for (const r of seen) {
    if (r.enumerated) continue;
    for (const k of Object.keys(r.obj)) if (!r.asked.has(k)) unknown.push(`${r.path}/${k}`);
  }
  return unknown;
}

// ---------------------------------------------------------------- loading renders
function load(file) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'));
  const objs = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
    const o = d.toJS();
    if (o !== null && o !== undefined) objs.push(o);
  }
  return objs;
}
const podSpec = (o) => o.spec.template.spec;
const containersOf = (o) => podSpec(o).containers || [];
const envOf = (c) => new Map((c.env || []).map((e) => [e.name, e]));
function expandEnv(s, c, where) {
  const env = envOf(c);
  return String(s).replace(/\$\(([A-Za-z_][\w]*)\)/g, (m, name) => {
    const e = env.get(name);
    ok(e, `${where}: $(${name}) is defined in the container's env`);
    if (e && e.value !== undefined) return e.value;
    return m; // from the downward API: known only in the pod
  });
}
function volumeOf(o, c, mountPath) {
  // The volume mounted at mountPath (or at a parent of it) in container c.
  const norm = (p) => p.replace(/\/+$/, '') || '/';
  const target = norm(mountPath);
  let best = null;
  for (const m of c.volumeMounts || []) {
    const mp = norm(m.mountPath);
    if (target === mp || target.startsWith(mp === '/' ? '/' : mp + '/')) {
      if (!best || mp.length > norm(best.mountPath).length) best = m;
    }
  }
  if (!best) return null;
  const v = (podSpec(o).volumes || []).find((x) => x.name === best.name);
  return v ? { mount: best, volume: v, rest: target.slice(norm(best.mountPath).length) } : null;
}
const hostPathOf = (vm) => vm && vm.volume.hostPath &&
  (vm.volume.hostPath.path.replace(/\/+$/, '') + vm.rest);
function portOf(c, p) {
  // A probe's or Service's port (number or name) in container c -> number.
  if (typeof p === 'number') return (c.ports || []).some((x) => x.containerPort === p) ? p : null;
  const x = (c.ports || []).find((q) => q.name === p);
  return x ? x.containerPort : null;
}
const listenPort = (v) => { const m = String(v).match(/:(\d+)$/); return m ? Number(m[1]) : null; };

// ---------------------------------------------------------------- one render's checks
function checkRender(name, objs) {
  const byKey = new Map();
  const find = (kind, n, ns) => objs.find((o) => o.kind === kind && o.metadata.name === n &&
                                             (ns === undefined || o.metadata.namespace === ns));
  const namespaces = objs.filter((o) => o.kind === 'Namespace');

  group(`${name}: kinds, API versions, names, namespaces`, () => {
    ok(objs.length > 10, `${objs.length} objects rendered`);
    ok(namespaces.length === 1, 'exactly one Namespace');
    const ns = namespaces[0] && namespaces[0].metadata.name;
    for (const o of objs) {
      const k = KINDS[o.kind];
      if (!ok(k, `${id(o)}: kind ${o.kind} is one Castor deploys`)) continue;
      ok(o.apiVersion === k[0], `${id(o)}: apiVersion ${o.apiVersion} is ${k[0]}`);
      const allowed = new Set(['apiVersion', 'kind', 'metadata', ...k[2]]);
      for (const key of Object.keys(o)) ok(allowed.has(key), `${id(o)}: top-level key ${key} expected`);
      ok(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(o.metadata.name || ''), `${id(o)}: DNS-1123 name`);
      if (k[1]) ok(o.metadata.namespace === ns, `${id(o)}: in namespace ${ns}`);
      else ok(o.metadata.namespace === undefined, `${id(o)}: cluster-scoped, no namespace`);
      const key = id(o);
      ok(!byKey.has(key), `${key}: defined once`);
      byKey.set(key, o);
      ok(o.metadata.labels && o.metadata.labels['app.kubernetes.io/part-of'] === 'castor',
         `${id(o)}: labelled app.kubernetes.io/part-of=castor`);
    }
  });

  group(`${name}: Kubernetes schemas (kubernetes-models) and unknown fields`, () => {
    for (const o of objs) {
      const m = modelFor(o.apiVersion, o.kind);
      if (!ok(m, `${id(o)}: kubernetes-models has ${o.apiVersion} ${o.kind}`)) continue;
      let err = null;
      try { new m.Model(JSON.parse(JSON.stringify(o))).validate(); } catch (e) { err = e.message; }
      ok(err === null, `${id(o)}: valid ${o.apiVersion} ${o.kind}${err ? ': ' + err : ''}`);
      const unknown = unknownFields(m.validate, o);
      ok(unknown.length === 0, `${id(o)}: no field outside the schema${unknown.length ? ': ' + unknown.join(', ') : ''}`);
    }
  });

  const workloads = objs.filter((o) => WORKLOADS.includes(o.kind));

  group(`${name}: workloads (selectors, volumes, env, probes, images, accounts)`, () => {
    for (const o of workloads) {
      const ps = podSpec(o);
      const labels = o.spec.template.metadata.labels || {};
      for (const [k, v] of Object.entries(o.spec.selector.matchLabels || {})) {
        ok(labels[k] === v, `${id(o)}: selector ${k}=${v} matches the pod template`);
      }
      if (ps.serviceAccountName) ok(find('ServiceAccount', ps.serviceAccountName, o.metadata.namespace),
                                    `${id(o)}: ServiceAccount ${ps.serviceAccountName} exists`);
      else ok(ps.automountServiceAccountToken === false, `${id(o)}: no ServiceAccount, no token mounted`);
      if (ps.priorityClassName) ok(/^system-(node|cluster)-critical$/.test(ps.priorityClassName),
                                   `${id(o)}: priorityClassName ${ps.priorityClassName} is a built-in one`);
      const volNames = new Set((ps.volumes || []).map((v) => v.name));
      ok(volNames.size === (ps.volumes || []).length, `${id(o)}: volume names unique`);
      const claimTemplates = new Set(((o.spec.volumeClaimTemplates) || []).map((t) => t.metadata.name));
      const used = new Set();
      for (const v of ps.volumes || []) {
        if (v.persistentVolumeClaim) ok(find('PersistentVolumeClaim', v.persistentVolumeClaim.claimName, o.metadata.namespace),
                                        `${id(o)}: PersistentVolumeClaim ${v.persistentVolumeClaim.claimName} exists`);
        if (v.hostPath) ok(v.hostPath.path.startsWith('/'), `${id(o)}: hostPath ${v.hostPath.path} absolute`);
      }
      if (o.kind === 'StatefulSet') {
        const svc = find('Service', o.spec.serviceName, o.metadata.namespace);
        ok(svc && svc.spec.clusterIP === 'None', `${id(o)}: serviceName ${o.spec.serviceName} is a headless Service`);
      }
      const ports = new Map();
      for (const c of [...ps.containers, ...(ps.initContainers || [])]) {
        const where = `${id(o)} container ${c.name}`;
        ok(/:[\w.-]+$/.test(c.image) && !/:latest$/.test(c.image), `${where}: image ${c.image} has a pinned tag`);
        ok(c.imagePullPolicy === 'IfNotPresent', `${where}: imagePullPolicy IfNotPresent`);
        for (const m of c.volumeMounts || []) {
          used.add(m.name);
          ok(volNames.has(m.name) || claimTemplates.has(m.name), `${where}: volume ${m.name} mounted at ${m.mountPath} exists`);
          if (m.mountPropagation === 'Bidirectional') {
            ok(c.securityContext && c.securityContext.privileged === true,
               `${where}: Bidirectional mount propagation needs a privileged container`);
          }
        }
        for (const e of c.env || []) {
          if (e.valueFrom && e.valueFrom.fieldRef) {
            ok(['spec.nodeName', 'status.hostIP', 'metadata.name', 'metadata.namespace', 'status.podIP']
               .includes(e.valueFrom.fieldRef.fieldPath), `${where}: env ${e.name} from a known field`);
          }
        }
        for (const a of [...(c.command || []), ...(c.args || [])]) expandEnv(a, c, where);
        for (const p of c.ports || []) {
          ok(!ports.has(p.containerPort), `${where}: port ${p.containerPort} declared once in the pod`);
          ports.set(p.containerPort, c.name);
        }
        for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
          const pr = c[probe];
          if (!pr) continue;
          const p = pr.httpGet ? pr.httpGet.port : pr.tcpSocket ? pr.tcpSocket.port : undefined;
          if (p !== undefined) ok(portOf(c, p) !== null, `${where}: ${probe} port ${p} is a port of the container`);
        }
      }
      for (const v of ps.volumes || []) ok(used.has(v.name), `${id(o)}: volume ${v.name} is mounted`);
      if (ps.hostNetwork) {
        const refsCluster = ps.containers.some((c) => (c.args || []).some((a) => /\.svc(\.|:|$)/.test(a)));
        if (refsCluster) ok(ps.dnsPolicy === 'ClusterFirstWithHostNet',
                            `${id(o)}: on the host's network and naming Services: dnsPolicy ClusterFirstWithHostNet`);
      }
    }
    // Pods on the host's network that may share a node must not share a port.
    const hostPorts = new Map();
    for (const o of workloads.filter((w) => podSpec(w).hostNetwork)) {
      for (const c of containersOf(o)) {
        for (const p of c.ports || []) {
          const other = hostPorts.get(p.containerPort);
          ok(!other, `${id(o)}: host port ${p.containerPort} not also used by ${other}`);
          hostPorts.set(p.containerPort, `${id(o)}/${c.name}`);
        }
      }
    }
  });

  group(`${name}: Services reach their pods`, () => {
    for (const s of objs.filter((o) => o.kind === 'Service')) {
      const sel = s.spec.selector || {};
      const targets = workloads.filter((w) => w.metadata.namespace === s.metadata.namespace &&
        Object.entries(sel).every(([k, v]) => (w.spec.template.metadata.labels || {})[k] === v));
      if (!ok(targets.length === 1, `${id(s)}: selects one workload (${targets.map(id)})`)) continue;
      for (const p of s.spec.ports) {
        const tp = p.targetPort === undefined ? p.port : p.targetPort;
        const n = containersOf(targets[0]).map((c) => portOf(c, tp)).find((x) => x !== null);
        ok(n !== undefined, `${id(s)}: port ${p.name} targetPort ${tp} is a port of ${id(targets[0])}`);
      }
    }
  });

  // A HOST:PORT naming a Service of the render: SVC.NS.svc[.cluster.local]:PORT, or a
  // StatefulSet's pod POD-N.SVC.NS.svc:PORT.
  function checkServiceAddress(addr, where) {
    const m = addr.match(/^([a-z0-9-]+)\.([a-z0-9-]+)(?:\.([a-z0-9-]+))?\.svc(?:\.cluster\.local)?:(\d+)$/);
    if (!ok(m, `${where}: ${addr} is SERVICE.NAMESPACE.svc:PORT`)) return;
    let svcName; let ns; let pod = null;
    if (m[3]) { pod = m[1]; svcName = m[2]; ns = m[3]; } else { svcName = m[1]; ns = m[2]; }
    const svc = find('Service', svcName, ns);
    if (!ok(svc, `${where}: Service ${ns}/${svcName} of ${addr} exists`)) return;
    ok(svc.spec.ports.some((p) => p.port === Number(m[4])), `${where}: Service ${svcName} has port ${m[4]}`);
    if (pod) {
      const sts = objs.find((o) => o.kind === 'StatefulSet' && o.spec.serviceName === svcName &&
                                   o.metadata.namespace === ns);
      const pm = sts && pod.match(new RegExp(`^${sts.metadata.name}-(\\d+)$`));
      ok(pm && Number(pm[1]) < sts.spec.replicas, `${where}: ${pod} is a pod of a StatefulSet behind ${svcName}`);
    }
  }

  group(`${name}: Castor binaries' flags (--help), listen ports, addresses`, () => {
    let castorContainers = 0;
    for (const o of workloads) {
      for (const c of containersOf(o)) {
        const bin = castorBinaryOf(c.image);
        const where = `${id(o)} container ${c.name}`;
        if (c.image.startsWith('registry.k8s.io/etcd:')) {
          ok(c.command && c.command[0] === 'etcd', `${where}: runs etcd`);
          const f = parseArgs(c.args || [], castorFlags.etcd, `${where} (etcd)`);
          const peers = (f.get('--initial-cluster') || [''])[0].split(',');
          ok(peers.length === o.spec.replicas, `${where}: --initial-cluster names ${o.spec.replicas} members`);
          for (const p of peers) {
            const pm = p.match(/^([\w-]+)=http:\/\/([^/]+)$/);
            if (ok(pm, `${where}: member ${p} is NAME=http://HOST:PORT`)) {
              ok(pm[2].startsWith(pm[1] + '.'), `${where}: member ${pm[1]} at its own pod name`);
              checkServiceAddress(pm[2], where);
            }
          }
          continue;
        }
        if (!bin) continue;
        castorContainers++;
        ok(!c.command, `${where}: no command: the image's ENTRYPOINT ${bin} runs`);
        const flags = castorFlags[bin];
        if (!flags) continue;
        const f = parseArgs(c.args || [], flags, `${where} (${bin})`);
        const one = (n) => (f.get(n) || [])[0];
        // Listeners: each --*-listen port is a declared container port, and back.
        const listened = new Set();
        for (const [flag, vals] of f) {
          if (!flag.endsWith('-listen')) continue;
          for (const v of vals) {
            if (v === 'none') continue;
            ok(/^(0\.0\.0\.0|\[::\]):\d+$/.test(v), `${where}: ${flag} ${v} listens on every address of the pod`);
            const port = listenPort(v);
            listened.add(port);
            ok((c.ports || []).some((p) => p.containerPort === port), `${where}: ${flag} port ${port} is a container port`);
          }
        }
        for (const p of c.ports || []) {
          if (p.name === 'healthz') continue;
          ok(listened.has(p.containerPort), `${where}: container port ${p.name} ${p.containerPort} is listened on`);
        }
        for (const v of f.get('--control') || []) {
          for (const a of v.split(',')) checkServiceAddress(a, `${where} --control`);
        }
        if (bin === 'castor-engine') {
          ok(one('--control') && one('--node-name') === '$(NODE_NAME)' && one('--node-address') === '$(NODE_IP)',
             `${where}: --control with --node-name $(NODE_NAME) and --node-address $(NODE_IP)`);
          ok(envOf(c).get('NODE_NAME')?.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName', `${where}: NODE_NAME is spec.nodeName`);
          ok(envOf(c).get('NODE_IP')?.valueFrom?.fieldRef?.fieldPath === 'status.hostIP', `${where}: NODE_IP is status.hostIP`);
          for (const l of ['--grpc-listen', '--nvmf-listen', '--iscsi-listen', '--nbd-listen']) ok(one(l), `${where}: ${l} given`);
          const ps = podSpec(o);
          ok(ps.hostNetwork === true, `${where}: on the host's network`);
          ok(c.securityContext && c.securityContext.privileged === true, `${where}: privileged`);
          ok(o.kind === 'DaemonSet' && ps.nodeSelector && ps.nodeSelector['castor.io/engine'] === 'true',
             `${where}: a DaemonSet on nodes labelled castor.io/engine=true`);
          const sd = one('--state-dir');
          ok(sd && hostPathOf(volumeOf(o, c, sd)), `${where}: --state-dir ${sd} is on a hostPath`);
          const dev = volumeOf(o, c, '/dev');
          ok(dev && hostPathOf(dev) === '/dev', `${where}: the host's /dev is mounted`);
        }
        if (bin === 'castor-control') {
          const store = one('--store') || '';
          if (store.startsWith('sqlite://')) {
            const vm = volumeOf(o, c, path.dirname(store.replace(/^sqlite:\/\//, '')));
            ok(vm && vm.volume.persistentVolumeClaim, `${where}: the SQLite store ${store} is on a PersistentVolumeClaim`);
            ok(o.spec.replicas === 1 && o.spec.strategy && o.spec.strategy.type === 'Recreate',
               `${where}: on SQLite, one replica, replaced by Recreate`);
          } else if (ok(store.startsWith('etcd://'), `${where}: --store ${store} is sqlite:// or etcd://`)) {
            for (const a of store.slice('etcd://'.length).split(',')) checkServiceAddress(a, `${where} --store`);
            ok(o.spec.replicas >= 2, `${where}: on etcd, at least 2 replicas (one leads)`);
          }
          ok(one('--identity') === '$(POD_NAME)' &&
             envOf(c).get('POD_NAME')?.valueFrom?.fieldRef?.fieldPath === 'metadata.name',
             `${where}: --identity is the pod's name (each replica distinct)`);
          ok(c.readinessProbe && portOf(c, c.readinessProbe.tcpSocket && c.readinessProbe.tcpSocket.port) ===
             listenPort(one('--grpc-listen')), `${where}: ready when the gRPC port listens (the leader)`);
          ok(!c.livenessProbe, `${where}: no liveness probe on the port a standby does not listen on`);
        }
      }
    }
    ok(castorContainers >= 4, `${castorContainers} Castor containers checked`);
  });

  group(`${name}: CSI (driver name, sockets, sidecars, kubelet paths)`, () => {
    const drivers = objs.filter((o) => o.kind === 'CSIDriver');
    ok(drivers.length === 1 && drivers[0].metadata.name === DRIVER, `one CSIDriver ${DRIVER}`);
    const d = drivers[0] && drivers[0].spec;
    ok(d && d.attachRequired === true && d.podInfoOnMount === false &&
       d.fsGroupPolicy === 'ReadWriteOnceWithFSType' && d.storageCapacity === false &&
       JSON.stringify(d.volumeLifecycleModes) === '["Persistent"]', `CSIDriver ${DRIVER} spec as designed`);
    const scs = objs.filter((o) => o.kind === 'StorageClass');
    ok(scs.length >= 3, `${scs.length} StorageClasses`);
    for (const sc of scs) {
      const where = id(sc);
      ok(sc.provisioner === DRIVER, `${where}: provisioner ${DRIVER}`);
      ok(sc.allowVolumeExpansion === true && sc.volumeBindingMode === 'WaitForFirstConsumer',
         `${where}: expandable, bound when first consumed`);
      const p = sc.parameters || {};
      for (const [k, v] of Object.entries(p)) {
        ok(typeof v === 'string', `${where}: parameter ${k} is a string`);
        if (k === 'repl') ok(/^[1-8]$/.test(v), `${where}: repl ${v} in 1..8`);
        else if (k === 'thin') ok(['true', 'false'].includes(v), `${where}: thin ${v} is true or false`);
        else if (k === 'protocol') ok(['nvmf', 'iscsi', 'nbd'].includes(v), `${where}: protocol ${v}`);
        else if (k === 'csi.storage.k8s.io/fstype' || k === 'fsType') ok(['ext4', 'xfs'].includes(v), `${where}: ${k} ${v}`);
        else ok(false, `${where}: parameter ${k} is one castor-csi knows`);
      }
    }
    for (const want of ['1', '3']) ok(scs.some((s) => (s.parameters || {}).repl === want), `a StorageClass with repl ${want}`);
    ok(scs.some((s) => (s.parameters || {}).thin === 'true'), 'a StorageClass with thin true');

    const csiPods = workloads.filter((o) => containersOf(o).some((c) => castorBinaryOf(c.image) === 'castor-csi'));
    const modes = {};
    for (const o of csiPods) {
      const ps = podSpec(o);
      const drv = containersOf(o).find((c) => castorBinaryOf(c.image) === 'castor-csi');
      const where = `${id(o)}`;
      const f = parseArgs(drv.args || [], castorFlags['castor-csi'] || new Map(), `${where} castor-csi`);
      const mode = (f.get('--mode') || [])[0];
      if (!ok(['controller', 'node'].includes(mode), `${where}: --mode ${mode}`)) continue;
      modes[mode] = o;
      const endpoint = (f.get('--endpoint') || [''])[0];
      const em = endpoint.match(/^unix:\/\/(\/.+)$/);
      if (!ok(em, `${where}: --endpoint ${endpoint} is unix:///PATH`)) continue;
      const sock = em[1];
      const drvVol = volumeOf(o, drv, path.dirname(sock));
      ok(drvVol, `${where}: the socket's directory ${path.dirname(sock)} is a volume`);
      const sidecars = {};
      for (const c of containersOf(o)) {
        const s = sidecarOf(c.image);
        if (c === drv) continue;
        if (!ok(s, `${where} container ${c.name}: image ${c.image} is a pinned sig-storage sidecar`)) continue;
        sidecars[s] = c;
        const g = goFlags(c.args);
        const addr = g.get('csi-address');
        if (!ok(typeof addr === 'string', `${where} ${c.name}: --csi-address given`)) continue;
        const a = expandEnv(addr, c, `${where} ${c.name}`);
        ok(a === sock, `${where} ${c.name}: --csi-address ${a} is castor-csi's socket ${sock}`);
        const vol = volumeOf(o, c, path.dirname(a));
        ok(vol && drvVol && vol.volume.name === drvVol.volume.name,
           `${where} ${c.name}: the socket's directory is the volume castor-csi serves it in`);
        if (s === 'livenessprobe') {
          const hp = Number(g.get('health-port'));
          const lp = drv.livenessProbe && drv.livenessProbe.httpGet;
          ok(lp && lp.path === '/healthz' && portOf(drv, lp.port) === hp,
             `${where}: castor-csi's liveness probe is /healthz on the livenessprobe's --health-port ${hp}`);
        }
        if (s === 'registrar') {
          const reg = g.get('kubelet-registration-path');
          const host = hostPathOf(drvVol);
          ok(host && reg === `${host}/${path.basename(sock)}`,
             `${where}: --kubelet-registration-path ${reg} is the socket's host path ${host}/${path.basename(sock)}`);
          ok(host && path.basename(host) === DRIVER && path.basename(path.dirname(host)) === 'plugins',
             `${where}: the socket is in kubelet's plugins/${DRIVER}/`);
          const rv = volumeOf(o, c, '/registration');
          ok(rv && /\/plugins_registry$/.test(hostPathOf(rv) || ''),
             `${where}: /registration is kubelet's plugins_registry`);
          ok(rv && host && path.dirname(hostPathOf(rv)) === path.dirname(path.dirname(host)),
             `${where}: plugins/ and plugins_registry/ under the same kubelet directory`);
        }
        if (['provisioner', 'attacher', 'resizer'].includes(s)) {
          ok(g.get('leader-election') === true || g.get('leader-election') === 'true' || o.spec.replicas === 1,
             `${where} ${c.name}: leader election, or one replica`);
        }
      }
      if (mode === 'controller') {
        for (const s of ['provisioner', 'attacher', 'resizer', 'livenessprobe']) ok(sidecars[s], `${where}: sidecar ${s}`);
        ok(o.kind === 'Deployment', `${where}: the controller is a Deployment`);
        ok(drvVol && drvVol.volume.emptyDir, `${where}: the socket in an emptyDir`);
        ok((f.get('--control') || []).length === 1, `${where}: castor-csi --control given`);
        if (sidecars.provisioner) {
          const g = goFlags(sidecars.provisioner.args);
          ok(g.get('feature-gates') === 'Topology=true' && g.get('strict-topology') === 'false' &&
             g.get('default-fstype') === 'ext4' && g.get('extra-create-metadata') === true && g.get('timeout') === '60s',
             `${where}: csi-provisioner's flags (topology, ext4, extra metadata, 60s timeout)`);
        }
      } else {
        for (const s of ['registrar', 'livenessprobe']) ok(sidecars[s], `${where}: sidecar ${s}`);
        ok(o.kind === 'DaemonSet', `${where}: the node plugin is a DaemonSet`);
        ok(ps.hostNetwork === true, `${where}: the node plugin on the host's network`);
        ok(drv.securityContext && drv.securityContext.privileged === true, `${where}: castor-csi node privileged`);
        ok((f.get('--node-name') || [])[0] === '$(NODE_NAME)' &&
           envOf(drv).get('NODE_NAME')?.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName',
           `${where}: --node-name $(NODE_NAME) from spec.nodeName`);
        const host = hostPathOf(drvVol);
        const kubelet = host && path.dirname(path.dirname(host));
        const kv = kubelet && volumeOf(o, drv, kubelet);
        ok(kv && hostPathOf(kv) === kubelet && kv.rest === '' && kv.mount.mountPropagation === 'Bidirectional',
           `${where}: kubelet's directory ${kubelet} mounted at the same path, Bidirectional`);
        for (const [p, ro] of [['/dev', false], ['/sys', false], ['/run/udev', false], ['/lib/modules', true]]) {
          const v = volumeOf(o, drv, p);
          ok(v && v.rest === '' && hostPathOf(v) === p && !!v.mount.readOnly === ro,
             `${where}: host ${p} mounted${ro ? ' read-only' : ''}`);
        }
        const sd = (f.get('--state-dir') || ['/var/lib/castor-csi'])[0];
        const sv = volumeOf(o, drv, sd);
        ok(sv && hostPathOf(sv) === sd, `${where}: --state-dir ${sd} is the host's ${sd}`);
      }
    }
    ok(modes.controller && modes.node, 'a CSI controller and a CSI node plugin');
  });

  group(`${name}: RBAC (bindings, what each sidecar needs)`, () => {
    const can = new Map(); // SA id -> Set("group/resource:verb")
    for (const b of objs.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding')) {
      const roleKind = b.roleRef.kind;
      const role = find(roleKind, b.roleRef.name, roleKind === 'Role' ? b.metadata.namespace : undefined);
      ok(role && b.roleRef.apiGroup === 'rbac.authorization.k8s.io', `${id(b)}: ${roleKind} ${b.roleRef.name} exists`);
      ok(b.kind === 'RoleBinding' || roleKind === 'ClusterRole', `${id(b)}: a ClusterRoleBinding binds a ClusterRole`);
      for (const s of b.subjects || []) {
        if (!ok(s.kind === 'ServiceAccount' && find('ServiceAccount', s.name, s.namespace),
                `${id(b)}: subject ServiceAccount ${s.namespace}/${s.name} exists`)) continue;
        const key = `${s.namespace}/${s.name}`;
        if (!can.has(key)) can.set(key, new Set());
        for (const r of (role && role.rules) || []) {
          for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) can.get(key).add(`${g}/${res}:${v}`);
        }
      }
    }
    const NEEDS = {
      provisioner: { '/persistentvolumes': 'get list watch create delete', '/persistentvolumeclaims': 'get list watch update',
        'storage.k8s.io/storageclasses': 'get list watch', '/events': 'list watch create update patch',
        'storage.k8s.io/csinodes': 'get list watch', '/nodes': 'get list watch', 'storage.k8s.io/volumeattachments': 'get list watch' },
      attacher: { '/persistentvolumes': 'get list watch patch', 'storage.k8s.io/csinodes': 'get list watch',
        'storage.k8s.io/volumeattachments': 'get list watch patch', 'storage.k8s.io/volumeattachments/status': 'patch' },
      resizer: { '/persistentvolumes': 'get list watch patch', '/persistentvolumeclaims': 'get list watch',
        '/persistentvolumeclaims/status': 'patch', '/pods': 'get list watch', '/events': 'list watch create update patch' },
      leader: { 'coordination.k8s.io/leases': 'get watch list create update' },
      node: { '/nodes': 'get' },
    };
    for (const o of workloads) {
      const ps = podSpec(o);
      const sa = `${o.metadata.namespace}/${ps.serviceAccountName}`;
      const needs = [];
      for (const c of containersOf(o)) {
        const s = sidecarOf(c.image);
        if (['provisioner', 'attacher', 'resizer'].includes(s)) {
          needs.push(s);
          if (goFlags(c.args).get('leader-election')) needs.push('leader');
        }
        if (castorBinaryOf(c.image) === 'castor-csi' && (c.args || []).includes('node')) needs.push('node');
      }
      for (const n of needs) {
        for (const [res, verbs] of Object.entries(NEEDS[n])) {
          for (const v of verbs.split(' ')) {
            ok(can.get(sa) && can.get(sa).has(`${res}:${v}`), `${id(o)}: ${n}: ServiceAccount ${sa} may ${v} ${res}`);
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------- render pairs
function normalize(o) {
  // What helm adds of its own, should a template add it, is not a difference.
  const c = JSON.parse(JSON.stringify(o));
  for (const m of [c.metadata, c.spec && c.spec.template && c.spec.template.metadata]) {
    if (m && m.labels) { delete m.labels['helm.sh/chart']; delete m.labels['app.kubernetes.io/managed-by']; }
  }
  return c;
}
function diff(a, b, p, out) {
  if (out.length > 8) return;
  if (typeof a !== typeof b || Array.isArray(a) !== Array.isArray(b) || a === null || b === null ||
      typeof a !== 'object') {
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push(`${p || '/'}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`);
    return;
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) diff(a[k], b[k], `${p}/${k}`, out);
}
function checkSame(aName, aObjs, bName, bObjs) {
  group(`${aName} and ${bName} hold the same objects`, () => {
    const key = (o) => `${o.kind}/${o.metadata.name}`;
    const A = new Map(aObjs.map((o) => [key(o), o]));
    const B = new Map(bObjs.map((o) => [key(o), o]));
    for (const k of A.keys()) ok(B.has(k), `${k} of ${aName} is in ${bName}`);
    for (const k of B.keys()) ok(A.has(k), `${k} of ${bName} is in ${aName}`);
    for (const [k, a] of A) {
      if (!B.has(k)) continue;
      const out = [];
      diff(normalize(a), normalize(B.get(k)), '', out);
      ok(out.length === 0, `${k}: the same in both${out.length ? ':\n      ' + out.join('\n      ') : ''}`);
    }
  });
}

// ---------------------------------------------------------------- Dockerfiles
function parseDockerfile(file) {
  const text = fs.readFileSync(file, 'utf8').replace(/\\\n/g, ' ');
  const stages = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^(\w+)\s+(.*)$/);
    if (!m) continue;
    const ins = m[1].toUpperCase();
    if (ins === 'FROM') {
      const f = m[2].match(/^(\S+)(?:\s+AS\s+(\S+))?$/i);
      stages.push({ base: f[1], name: f[2] || null, lines: [] });
    } else if (stages.length) {
      stages[stages.length - 1].lines.push([ins, m[2]]);
    }
  }
  return stages;
}
function aptInstalls(stage) {
  const pkgs = [];
  for (const [ins, rest] of stage.lines) {
    if (ins !== 'RUN') continue;
    for (const part of rest.split(/&&|;/)) {
      const m = part.match(/apt-get\s+install\s+(.*)$/);
      if (m) for (const w of m[1].trim().split(/\s+/)) if (!w.startsWith('-')) pkgs.push(w);
    }
  }
  return pkgs;
}
function run(cmd, args) {
  const r = cp.spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  return r.status === 0 ? r.stdout : null;
}
// Debian's package data, read in a few batched calls (each apt-cache call takes ~1 s).
let installed = null; // name -> [dependencies] of every installed package
function installedPackages() {
  if (installed) return installed;
  installed = new Map();
  const out = run('dpkg-query', ['-W', '-f=${Package}\t${db:Status-Status}\t${Depends}, ${Pre-Depends}\n']) || '';
  for (const line of out.split('\n')) {
    const [name, status, deps] = line.split('\t');
    if (name && status === 'installed') installed.set(name, depNames(deps));
  }
  return installed;
}
const depNames = (text) => (text || '').split(/[,|]/).map((s) => s.trim().split(/[\s(:]/)[0]).filter(Boolean);
const aptDeps = new Map(); // name -> [dependencies] of packages apt knows but are not installed
function aptDepends(names) {
  const todo = names.filter((n) => !aptDeps.has(n));
  if (!todo.length) return;
  for (const n of todo) aptDeps.set(n, null);
  // --recurse: the whole closure in one call.
  const out = cp.spawnSync('apt-cache', ['depends', '--recurse', '--no-recommends', '--no-suggests', '--no-conflicts',
    '--no-breaks', '--no-replaces', '--no-enhances', ...todo], { encoding: 'utf8', maxBuffer: 64 << 20 }).stdout || '';
  let cur = null;
  let alt = false;
  for (const line of out.split('\n')) {
    let m;
    if ((m = line.match(/^(\S+)$/))) {
      cur = m[1].replace(/^<|>$/g, '');
      if (!aptDeps.get(cur)) aptDeps.set(cur, []);
      alt = false;
      continue;
    }
    if (!cur) continue;
    if ((m = line.match(/^\s+(\|)?(?:Pre)?Depends:\s+(\S+)/))) {
      aptDeps.get(cur).push(m[2].replace(/^<|>$/g, '').split(':')[0]);
      alt = !!m[1];
    } else if (alt && (m = line.match(/^\s{4,}(\S+)$/))) {
      aptDeps.get(cur).push(m[1].replace(/^<|>$/g, '').split(':')[0]);
    } else {
      alt = false;
    }
  }
}
function knownToDebian(names) {
  // Installed, or a candidate in apt's lists.
  const inst = installedPackages();
  const rest = names.filter((n) => !inst.has(n));
  const known = new Set(names.filter((n) => inst.has(n)));
  if (rest.length) {
    const lists = fs.existsSync('/var/lib/apt/lists')
      ? fs.readdirSync('/var/lib/apt/lists').filter((f) => /_Packages(\.\w+)?$/.test(f)) : [];
    ok(lists.length > 0, `apt's package lists exist to look up ${rest.join(', ')} (apt-get update makes them)`);
    const out = cp.spawnSync('apt-cache', ['policy', ...rest], { encoding: 'utf8' }).stdout || '';
    let cur = null;
    for (const line of out.split('\n')) {
      const m = line.match(/^(\S+):$/);
      if (m) { cur = m[1]; continue; }
      const c = line.match(/^\s+Candidate:\s+(\S+)/);
      if (cur && c && c[1] !== '(none)') known.add(cur);
    }
  }
  return known;
}
function closure(pkgs) {
  // Every package the given ones bring, by their dependencies (alternatives included).
  const inst = installedPackages();
  const seen = new Set();
  let level = [...pkgs];
  while (level.length) {
    const next = [];
    aptDepends(level.filter((p) => !inst.has(p) && !seen.has(p)));
    for (const p of level) {
      if (seen.has(p)) continue;
      seen.add(p);
      for (const d of (inst.get(p) || aptDeps.get(p) || [])) if (!seen.has(d)) next.push(d);
    }
    level = next;
  }
  return seen;
}
function packagesOfLibs(binary) {
  // The Debian package of each shared library the binary names (readelf's NEEDED).
  const needed = (run('readelf', ['-d', binary]) || '').split('\n')
    .map((l) => (l.match(/\(NEEDED\).*\[(.+)\]/) || [])[1]).filter(Boolean);
  const where = new Map();
  for (const l of (run('ldd', [binary]) || '').split('\n')) {
    const m = l.match(/^\s*(\S+) => (\/\S+)/);
    if (m) where.set(m[1], m[2]);
  }
  const candidates = new Map(); // path -> lib
  for (const lib of needed) {
    const p = where.get(lib);
    if (!ok(p, `${path.basename(binary)}: ${lib} found by ldd`)) continue;
    const real = fs.realpathSync(p);
    for (const c of [p, real, p.replace(/^\/lib\//, '/usr/lib/'), real.replace(/^\/lib\//, '/usr/lib/')]) candidates.set(c, lib);
  }
  const owner = new Map();
  const out = cp.spawnSync('dpkg-query', ['-S', ...candidates.keys()], { encoding: 'utf8' }).stdout || '';
  for (const line of out.split('\n')) {
    const m = line.match(/^([^:,\s]+)(?::\S+)?: (\/\S+)$/);
    if (m && candidates.has(m[2])) owner.set(candidates.get(m[2]), m[1]);
  }
  const res = new Map();
  for (const lib of needed) {
    if (!where.has(lib)) continue;
    if (ok(owner.has(lib), `${path.basename(binary)}: ${lib} (${where.get(lib)}) belongs to a Debian package`)) {
      res.set(lib, owner.get(lib));
    }
  }
  return res;
}
function setupPackages() {
  const text = fs.readFileSync(path.join(opt.root, 'scripts/setup.sh'), 'utf8');
  const m = text.match(/PACKAGES=\(([\s\S]*?)\n\)/);
  return m ? m[1].split('\n').map((l) => l.replace(/#.*/, '')).join(' ').split(/\s+/).filter(Boolean) : [];
}

function checkDockerfiles() {
  group('Dockerfiles (targets, build-tree paths, packages, entry points)', () => {
    const dir = path.join(opt.root, 'deploy/docker');
    const setup = setupPackages();
    ok(setup.length > 10, `scripts/setup.sh lists ${setup.length} packages`);
    const BUILD_TOOLS = ['build-essential', 'cmake', 'ninja-build', 'pkg-config', 'protobuf-compiler',
                         'protobuf-compiler-grpc'];
    const buildNeeds = setup.filter((p) => /-dev$/.test(p) || BUILD_TOOLS.includes(p));
    // Base image packages (debian:bookworm-slim): present without an install.
    const BASE = new Set(['libc6', 'libgcc-s1', 'libstdc++6', 'zlib1g']);
    const SANITIZERS = new Set(['libasan8', 'libubsan1', 'liblsan0', 'libtsan2']);
    const buildDir = path.resolve(opt.buildDir);
    const layout = (target) => {
      const bin = opt.binary[target];
      if (bin) return path.relative(buildDir, path.resolve(bin));
      return { 'castor-csi': 'src/csi/castor-csi' }[target];
    };
    const ignore = fs.existsSync(path.join(opt.root, '.dockerignore'))
      ? fs.readFileSync(path.join(opt.root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()) : [];
    for (const p of ['build', '.cache']) ok(ignore.includes(p) || ignore.includes(p + '/') || ignore.includes('/' + p),
                                            `.dockerignore excludes ${p}/`);

    for (const [image, spec] of Object.entries(IMAGES)) {
      const file = path.join(dir, spec.dockerfile);
      if (!ok(fs.existsSync(file), `${spec.dockerfile} exists`)) continue;
      const where = spec.dockerfile;
      const stages = parseDockerfile(file);
      ok(stages.length === 2, `${where}: two stages (build, runtime)`);
      for (const s of stages) ok(s.base === 'debian:bookworm-slim', `${where}: stage on debian:bookworm-slim (${s.base})`);
      const build = stages.find((s) => s.name);
      const final = stages[stages.length - 1];
      if (!ok(build && final !== build, `${where}: a named build stage before the runtime stage`)) continue;
      const bpk = new Set(aptInstalls(build));
      for (const p of buildNeeds) ok(bpk.has(p), `${where}: build stage installs ${p} (scripts/setup.sh)`);
      const runs = build.lines.filter(([i]) => i === 'RUN').map(([, r]) => r).join(' && ');
      const conf = runs.match(/cmake\s+-S\s+(\S+)\s+-B\s+(\S+)\s+(.*?)(&&|$)/);
      ok(conf && /-G\s+Ninja/.test(conf[3]) && /-DCMAKE_BUILD_TYPE=Release/.test(conf[3]),
         `${where}: cmake -G Ninja -DCMAKE_BUILD_TYPE=Release`);
      const copySrc = build.lines.find(([i, r]) => i === 'COPY' && /^\.\s+\.$/.test(r.trim()));
      const workdir = build.lines.find(([i]) => i === 'WORKDIR');
      ok(copySrc && workdir && conf && conf[1] === '.', `${where}: configures the source tree it copied`);
      const bdir = conf ? conf[2] : '/build';
      const bm = runs.match(/cmake\s+--build\s+(\S+)\s+--target\s+([^&;]+)/);
      const targets = bm ? bm[2].trim().split(/\s+/) : [];
      ok(bm && bm[1] === bdir, `${where}: builds in ${bdir}`);
      ok(targets.includes(image), `${where}: builds the target ${image}`);
      // COPY --from=build /build/<path of the target in a build tree> /usr/local/bin/<target>
      const copied = new Map();
      for (const [i, r] of final.lines) {
        if (i !== 'COPY') continue;
        const m = r.match(/^--from=(\S+)\s+(\S+)\s+(\S+)$/);
        if (!ok(m && m[1] === build.name, `${where}: COPY ${r} comes from the build stage`)) continue;
        const rel = path.posix.relative(bdir, m[2]);
        const target = path.posix.basename(m[2]);
        ok(targets.includes(target), `${where}: ${target} is a target the build stage builds`);
        ok(rel === layout(target), `${where}: ${m[2]} is where the build tree puts ${target} (${layout(target)})`);
        ok(m[3] === `/usr/local/bin/${target}`, `${where}: ${target} installed as /usr/local/bin/${target}`);
        copied.set(target, m[3]);
      }
      for (const t of targets) ok(copied.has(t), `${where}: built target ${t} is copied into the image`);
      const ep = final.lines.filter(([i]) => i === 'ENTRYPOINT');
      let entry = null;
      try { entry = ep.length === 1 ? JSON.parse(ep[0][1]) : null; } catch (e) { entry = null; }
      ok(Array.isArray(entry) && entry.length === 1 && entry[0] === copied.get(image),
         `${where}: ENTRYPOINT is [${copied.get(image)}] (the target ${image}), exec form`);
      // Runtime packages: each library the binaries name comes with a listed package.
      const rpk = aptInstalls(final);
      const known = knownToDebian([...bpk, ...rpk]);
      for (const p of [...bpk, ...rpk]) ok(known.has(p), `${where}: ${p} is a Debian 12 package`);
      const have = closure([...rpk, ...BASE]);
      for (const t of copied.keys()) {
        const bin = opt.binary[t];
        if (!bin) { console.log(`     ${where}: ${t} is not built: its libraries are not checked`); continue; }
        for (const [lib, pkg] of packagesOfLibs(bin)) {
          if (SANITIZERS.has(pkg)) continue;
          ok(have.has(pkg), `${where}: ${t} needs ${lib} of ${pkg}: installed in the runtime stage`);
        }
      }
      if (image === 'castor-csi') {
        for (const p of ['nvme-cli', 'open-iscsi', 'nbd-client', 'e2fsprogs', 'xfsprogs', 'util-linux', 'mount', 'kmod']) {
          ok(rpk.includes(p), `${where}: the node plugin's tool package ${p} installed`);
        }
      }
    }
    // The manifests' Castor images are the ones these Dockerfiles make.
  });
}

// ---------------------------------------------------------------- main
group('tools and binaries', loadFlags);
const renders = new Map();
for (const [name, file] of opt.render) {
  group(`${name}: parse ${path.basename(file)}`, () => {
    const objs = load(file);
    ok(objs.length > 0, `${objs.length} YAML documents`);
    for (const o of objs) ok(o && typeof o === 'object' && o.kind && o.metadata, `a Kubernetes object (${o && o.kind})`);
    renders.set(name, objs.filter((o) => o && o.kind && o.metadata));
  });
}
for (const [name, objs] of renders) checkRender(name, objs);
for (const [a, b] of opt.same) {
  if (ok(renders.has(a) && renders.has(b), `renders ${a} and ${b} exist`)) checkSame(a, renders.get(a), b, renders.get(b));
}
checkDockerfiles();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
