/**
 * The JSON documents of a single-layer OCI image (image-spec v1.1) and of
 * the OCI image layout that carries it, as pure functions: no I/O. The shell
 * (`images.ts`) builds the layer tar, hashes it, and writes what these
 * functions return.
 *
 * An image layout written from {@link imageLayoutFiles} is what
 * `ctr -n k8s.io images import ARCHIVE` takes: containerd names the image
 * after the `io.containerd.image.name` annotation of the index's manifest
 * descriptor, which must therefore be the *normalised* name (see
 * {@link normalizeImageName}) the kubelet's CRI runtime looks up for the name
 * written in a pod spec.
 *
 * @module
 */
import { createHash } from "node:crypto";

/** Media type of an OCI image manifest. */
export const MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json";
/** Media type of an OCI image configuration. */
export const CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json";
/** Media type of an uncompressed OCI layer (a plain tar). */
export const LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar";
/** Media type of an OCI image index (`index.json`). */
export const INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json";
/** Annotation containerd reads as the image's full name on import. */
export const CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name";
/** OCI annotation of an image layout's reference (the tag). */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";
/** Content of the `oci-layout` file. */
export const OCI_LAYOUT = { imageLayoutVersion: "1.0.0" } as const;
/** Architecture and OS of every image built here. */
export const PLATFORM = { architecture: "amd64", os: "linux" } as const;

/** An OCI content descriptor. */
export interface Descriptor {
  /** Media type of the referenced content. */
  mediaType: string;
  /** `sha256:<hex>` of the referenced bytes. */
  digest: string;
  /** Size of the referenced bytes. */
  size: number;
  /** Platform of a manifest referenced from an index. */
  platform?: { architecture: string; os: string };
  /** Annotations (in an index: the image's names). */
  annotations?: Record<string, string>;
}

/** What an image runs: the process part of its configuration. */
export interface ImageSpec {
  /** The image's name as written in a pod spec (e.g. `mbcas-agent:local`). */
  name: string;
  /** Program and leading arguments (`config.Entrypoint`). */
  entrypoint: string[];
  /** Default arguments (`config.Cmd`); a pod's `args` replace them. */
  cmd?: string[];
  /** Environment, `NAME=value` (`config.Env`). */
  env: string[];
  /** `uid[:gid]` (`config.User`). */
  user: string;
  /** Working directory (`config.WorkingDir`). */
  workingDir: string;
}

/** An OCI image configuration (the subset written here). */
export interface ImageConfig {
  /** Creation time (fixed, so the config is reproducible). */
  created: string;
  /** CPU architecture. */
  architecture: string;
  /** Operating system. */
  os: string;
  /** The process the image runs. */
  config: {
    Entrypoint: string[];
    Cmd?: string[];
    Env: string[];
    User: string;
    WorkingDir: string;
  };
  /** The layers' uncompressed digests. */
  rootfs: { type: "layers"; diff_ids: string[] };
  /** One entry per layer. */
  history: { created: string; created_by: string }[];
}

/** An OCI image manifest. */
export interface ImageManifest {
  /** Always 2. */
  schemaVersion: 2;
  /** {@link MANIFEST_MEDIA_TYPE}. */
  mediaType: typeof MANIFEST_MEDIA_TYPE;
  /** The configuration blob. */
  config: Descriptor;
  /** The layer blobs, base first. */
  layers: Descriptor[];
}

/** An OCI image index (`index.json` of a layout). */
export interface ImageIndex {
  /** Always 2. */
  schemaVersion: 2;
  /** {@link INDEX_MEDIA_TYPE}. */
  mediaType: typeof INDEX_MEDIA_TYPE;
  /** The manifests, each naming its image in its annotations. */
  manifests: Descriptor[];
}

/** A file of an OCI image layout: its path in the layout and its bytes. */
export interface LayoutFile {
  /** Path relative to the layout's root (`index.json`, `blobs/sha256/<hex>`). */
  path: string;
  /** The file's content. */
  bytes: Uint8Array;
}

/** Creation time written into configs: the epoch, like the layer's mtimes. */
export const CREATED = "1970-01-01T00:00:00Z";

/** `sha256:<hex>` of `bytes`. */
export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

/** The path of a blob in an OCI layout: `blobs/<algorithm>/<hex>`. */
export function blobPath(digest: string): string {
  const match = /^(sha256):([0-9a-f]{64})$/.exec(digest);
  if (match === null) throw new Error(`not a sha256 digest: ${digest}`);
  return `blobs/${match[1]}/${match[2]}`;
}

/** Canonical JSON bytes of a document (UTF-8, no whitespace). */
export function jsonBytes(document: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(document));
}

/**
 * The full name containerd's CRI plugin (and so the kubelet) uses for an
 * image name written in a pod spec, as Docker's reference normalisation
 * does it: a first component without `.` or `:` and other than `localhost`
 * is not a registry, so `docker.io` is prepended (and `library/` for a
 * single component); a name without tag or digest gets `:latest`.
 *
 * `mbcas-agent:local` → `docker.io/library/mbcas-agent:local`;
 * `mbcas.local/pause:1` stays as it is.
 */
export function normalizeImageName(name: string): string {
  if (name !== name.trim() || name === "" || /[A-Z]/.test(name.split(/[:@]/)[0])) {
    throw new Error(`invalid image name ${JSON.stringify(name)}`);
  }
  const slash = name.indexOf("/");
  const first = slash < 0 ? "" : name.slice(0, slash);
  let domain = "docker.io";
  let remainder = name;
  if (slash >= 0 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    domain = first === "index.docker.io" ? "docker.io" : first;
    remainder = name.slice(slash + 1);
  }
  if (domain === "docker.io" && !remainder.includes("/")) remainder = `library/${remainder}`;
  const lastPart = remainder.slice(remainder.lastIndexOf("/") + 1);
  if (!lastPart.includes(":") && !remainder.includes("@")) remainder = `${remainder}:latest`;
  return `${domain}/${remainder}`;
}

/** The tag of an image name (`latest` when it has none): the layout's ref name. */
export function imageTag(name: string): string {
  const lastPart = name.slice(name.lastIndexOf("/") + 1).split("@")[0];
  const colon = lastPart.indexOf(":");
  return colon < 0 ? "latest" : lastPart.slice(colon + 1);
}

/** A file name for an image's archive: the name with every character but `[A-Za-z0-9._-]` as `_`. */
export function archiveFileName(name: string): string {
  return `${name.replace(/[^A-Za-z0-9._-]/g, "_")}.tar`;
}

/** The descriptor of an uncompressed layer tar of `size` bytes whose sha256 is `digest`. */
export function layerDescriptor(digest: string, size: number): Descriptor {
  blobPath(digest); // validates
  if (!Number.isSafeInteger(size) || size < 0) throw new Error(`bad layer size ${size}`);
  return { mediaType: LAYER_MEDIA_TYPE, digest, size };
}

/**
 * The image configuration of a single-layer image. The layer is uncompressed,
 * so its diff_id is the layer blob's own digest.
 */
export function imageConfig(spec: ImageSpec, layer: Descriptor): ImageConfig {
  return {
    created: CREATED,
    ...PLATFORM,
    config: {
      Entrypoint: [...spec.entrypoint],
      ...(spec.cmd === undefined ? {} : { Cmd: [...spec.cmd] }),
      Env: [...spec.env],
      User: spec.user,
      WorkingDir: spec.workingDir,
    },
    rootfs: { type: "layers", diff_ids: [layer.digest] },
    history: [{ created: CREATED, created_by: "mbcas src/cluster/images.ts" }],
  };
}

/** The manifest of a single-layer image. */
export function imageManifest(config: Descriptor, layer: Descriptor): ImageManifest {
  return {
    schemaVersion: 2,
    mediaType: MANIFEST_MEDIA_TYPE,
    config: { mediaType: CONFIG_MEDIA_TYPE, digest: config.digest, size: config.size },
    layers: [{ mediaType: LAYER_MEDIA_TYPE, digest: layer.digest, size: layer.size }],
  };
}

/**
 * The `index.json` of a layout holding one image, named both ways: the full
 * normalised name for containerd and the tag as the OCI ref name.
 */
export function imageIndex(manifest: Descriptor, name: string): ImageIndex {
  return {
    schemaVersion: 2,
    mediaType: INDEX_MEDIA_TYPE,
    manifests: [{
      mediaType: MANIFEST_MEDIA_TYPE,
      digest: manifest.digest,
      size: manifest.size,
      platform: { ...PLATFORM },
      annotations: {
        [CONTAINERD_NAME_ANNOTATION]: normalizeImageName(name),
        [REF_NAME_ANNOTATION]: imageTag(name),
      },
    }],
  };
}

/**
 * Every file of an OCI layout holding the image `spec` over `layer`, except
 * the layer blob itself (at `blobPath(layer.digest)`, written by the caller):
 * `oci-layout`, `index.json`, and the config and manifest blobs.
 */
export function imageLayoutFiles(spec: ImageSpec, layer: Descriptor): LayoutFile[] {
  const configBytes = jsonBytes(imageConfig(spec, layer));
  const config: Descriptor = {
    mediaType: CONFIG_MEDIA_TYPE,
    digest: sha256Digest(configBytes),
    size: configBytes.length,
  };
  const manifestBytes = jsonBytes(imageManifest(config, layer));
  const manifest: Descriptor = {
    mediaType: MANIFEST_MEDIA_TYPE,
    digest: sha256Digest(manifestBytes),
    size: manifestBytes.length,
  };
  return [
    { path: "oci-layout", bytes: jsonBytes(OCI_LAYOUT) },
    { path: "index.json", bytes: jsonBytes(imageIndex(manifest, spec.name)) },
    { path: blobPath(config.digest), bytes: configBytes },
    { path: blobPath(manifest.digest), bytes: manifestBytes },
  ];
}

/**
 * Drops `deno compile`-only words from a task's flags (`--output X`,
 * `--output=X`, `-o X`, `--no-check`, and the other compile-only options
 * listed here) and adds `--no-prompt`, `--cached-only` and `extra` when
 * missing: the flags of a `deno run` equivalent to the compiled binary.
 */
export function runFlagsFromCompile(flags: string[], extra: string[] = []): string[] {
  const withValue = new Set(["--output", "-o", "--target", "--icon", "--include", "--exclude"]);
  const alone = new Set(["--no-check", "--no-terminal"]);
  const out: string[] = [];
  for (let i = 0; i < flags.length; i++) {
    const flag = flags[i];
    const key = flag.split("=")[0];
    if (withValue.has(flag)) {
      i++; // skip the value
      continue;
    }
    if (alone.has(key) || (withValue.has(key) && flag.includes("="))) continue;
    out.push(flag);
  }
  for (const flag of ["--no-prompt", "--cached-only", ...extra]) {
    const key = flag.split("=")[0];
    if (!out.some((f) => f.split("=")[0] === key)) out.push(flag);
  }
  return out;
}
