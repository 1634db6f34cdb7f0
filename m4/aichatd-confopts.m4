dnl Developer options, in the manner of curl's m4/curl-confopts.m4.

dnl --enable-werror: warnings are errors (CI builds with it).
AC_DEFUN([AICHATD_ENABLE_WERROR], [
	AC_ARG_ENABLE([werror],
		[AS_HELP_STRING([--enable-werror], [treat compiler warnings as errors])],
		[want_werror=$enableval], [want_werror=no])
	WARN_CFLAGS="-Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wformat=2"
	AS_IF([test "x$want_werror" = xyes], [WARN_CFLAGS="$WARN_CFLAGS -Werror"])
	AC_SUBST([WARN_CFLAGS])
])

dnl --enable-sanitizers: AddressSanitizer and UndefinedBehaviorSanitizer.
AC_DEFUN([AICHATD_ENABLE_SANITIZERS], [
	AC_ARG_ENABLE([sanitizers],
		[AS_HELP_STRING([--enable-sanitizers], [build with ASan and UBSan])],
		[want_san=$enableval], [want_san=no])
	SAN_CFLAGS=""
	SAN_LDFLAGS=""
	AS_IF([test "x$want_san" = xyes], [
		SAN_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
		SAN_LDFLAGS="-fsanitize=address,undefined"
	])
	AC_SUBST([SAN_CFLAGS])
	AC_SUBST([SAN_LDFLAGS])
])
