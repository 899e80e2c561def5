"""What makes an image worse and how to measure it: degradations (bicubic protocol,
real-world second-order model) and metrics (PSNR, MSE, SSIM in both protocols)."""
