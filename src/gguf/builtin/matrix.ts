/** A row-major matrix of `rows` x `cols`: ggml dims `[cols, rows]`. */
export class Matrix {
  readonly data: Float32Array;

  constructor(
    readonly rows: number,
    readonly cols: number,
  ) {
    this.data = new Float32Array(rows * cols);
  }

  set(row: number, col: number, value: number): void {
    if (row < 0 || row >= this.rows || col < 0 || col >= this.cols) {
      throw new RangeError(`(${row}, ${col}) is outside a ${this.rows}x${this.cols} matrix`);
    }
    this.data[row * this.cols + col] = value;
  }

  row(row: number): Float32Array {
    return this.data.subarray(row * this.cols, (row + 1) * this.cols);
  }
}
