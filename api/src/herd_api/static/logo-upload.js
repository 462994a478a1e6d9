// Upload a logo file: ask the API for a presigned POST, then post the file straight to S3.
// The POST policy (key, type, size, expiry) is what S3 enforces; the checks here only save
// the user a round trip.
const LOGO_TYPES = ["image/png", "image/jpeg", "image/webp"];
async function uploadLogo(slug, file, token) {
  if (!file) throw new Error("choose a file first");
  if (!LOGO_TYPES.includes(file.type)) throw new Error("PNG, JPEG or WebP only");
  const asked = await fetch(`/v1/tenants/${encodeURIComponent(slug)}/logo-uploads`, {
    method: "POST",
    headers: {"Authorization": `Bearer ${token}`, "Content-Type": "application/json"},
    body: JSON.stringify({contentType: file.type}),
  });
  const post = await asked.json();
  if (!asked.ok) throw new Error(typeof post.detail === "string" ? post.detail : "refused");
  if (file.size > post.maxBytes) throw new Error(`larger than ${post.maxBytes / 1048576} MiB`);
  const form = new FormData();
  for (const [k, v] of Object.entries(post.fields)) form.append(k, v);
  form.append("file", file);  // last: S3 ignores fields after the file
  const sent = await fetch(post.url, {method: "POST", body: form});
  if (!sent.ok) throw new Error(`the upload was refused (${sent.status})`);
  return post.key;
}
