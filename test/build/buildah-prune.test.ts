// The shared image storage does not grow with every build: older images of a name are removed.
import { expect, setDefaultTimeout, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildImage, imageExists, pruneImages, removeImages } from "../../scripts/buildah.ts";

setDefaultTimeout(120_000);

test("pruneImages keeps the newest three images of a name and removes the older ones", async () => {
  const context = await mkdtemp(join(tmpdir(), "arc-prune-"));
  const repository = `localhost/cluster-connect-test/prune-${process.pid}`;
  const tags = [1, 2, 3, 4, 5].map((n) => `${repository}:${n}`);
  try {
    await writeFile(join(context, "Dockerfile"), "FROM scratch\nCOPY marker /marker\n");
    for (const tag of tags) {
      // A different file each time: five images, not one under five names.
      await writeFile(join(context, "marker"), tag);
      await buildImage({ dockerfile: join(context, "Dockerfile"), context, tag });
    }
    const lines: string[] = [];
    await pruneImages(repository, (line) => lines.push(line));
    const present = await Promise.all(tags.map(imageExists));
    expect(present).toEqual([false, false, true, true, true]);
    expect(lines.join("\n")).toContain(`older image(s) of ${repository}`);
  } finally {
    await removeImages(tags);
    await rm(context, { recursive: true, force: true });
  }
});
