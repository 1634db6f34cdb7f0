dnl AICHATD_CHECK_DEBIAN_PKG(VAR, PKG-CONFIG-MODULES, DEBIAN-PACKAGE)
dnl pkg-config check whose failure names the Debian package to install.
AC_DEFUN([AICHATD_CHECK_DEBIAN_PKG], [
	PKG_CHECK_MODULES([$1], [$2], [],
		[AC_MSG_ERROR([$2 not found: install the Debian package $3 (apt-get install $3)])])
])
