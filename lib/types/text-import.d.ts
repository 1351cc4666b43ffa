// Bun's text imports (`import x from "./f.sh" with { type: "text" }`): the file's contents, embedded by bun build --compile.
declare module "*.sh" {
  const text: string;
  export default text;
}
